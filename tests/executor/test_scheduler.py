"""The dispatch loop on a fake backend: model affinity, retries, locks (no processes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from filelock import FileLock

from sparse_attention_hub.executor import plan, spec_from_dict
from sparse_attention_hub.executor.backends import BackendEvent, Slot
from sparse_attention_hub.executor.bundles import Bundle
from sparse_attention_hub.executor.plan import Job
from sparse_attention_hub.executor.progress import RunRecorder
from sparse_attention_hub.executor.scheduler import LOCK_FILE, Scheduler
from sparse_attention_hub.executor.testing import experiment, read_events


class FakeBackend:
    """Ends each job of a submitted bundle on the next wait; `fail` maps job ids to failures.

    Every worker reports ready on the first wait. `log` has one (worker, job id, attempt) per
    job dispatched; `bundles` the job ids per bundle.
    """

    def __init__(self, workers: int, fail: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.slots = [Slot(i, "cpu") for i in range(workers)]
        self.fail = fail or {}
        self.pending: list[tuple[int, Bundle]] = []
        self.log: list[tuple[int, str, int]] = []
        self.bundles: list[list[str]] = []
        self.starting: list[int] = []

    def start(self) -> None:
        self.starting = [slot.worker for slot in self.slots]

    def submit(self, worker: int, bundle: Bundle) -> None:
        self.pending.append((worker, bundle))
        self.bundles.append(bundle.job_ids)
        self.log += [
            (worker, j.job_id, a) for j, a in zip(bundle.jobs, bundle.attempts, strict=True)
        ]

    def wait(self, timeout: float) -> list[BackendEvent]:
        events = [BackendEvent(w, "ready", {"pid": 1000 + w}) for w in self.starting]
        self.starting = []
        for worker, bundle in self.pending:
            events.append(BackendEvent(worker, "started", {"bundle_id": bundle.bundle_id}))
            for job in bundle.jobs:
                failures = self.fail.get(job.job_id)
                if failures:
                    payload = {"job_id": job.job_id, "failure": failures.pop(0)}
                    events.append(BackendEvent(worker, "raised", payload))
                else:
                    payload = {"job_id": job.job_id, "duration_s": 1.0}
                    events.append(BackendEvent(worker, "finished", payload))
        self.pending = []
        return events

    def cancel(self, worker: int) -> None:
        raise AssertionError("not used")

    def shutdown(self, force: bool = False) -> None:
        pass


def jobs_for(base: Path, models: list[str], sparse: list[str]) -> list[Job]:
    return plan(spec_from_dict(experiment(base, models=models, sparse=sparse)))


def run(base: Path, jobs: list[Job], backend: FakeBackend, **kwargs: Any) -> Any:
    recorder = RunRecorder(base / "results", "test")
    try:
        return Scheduler(jobs, backend, recorder, poll_s=0.01, **kwargs).run()
    finally:
        recorder.close()


def test_workers_keep_their_model(tmp_path: Path) -> None:
    jobs = jobs_for(tmp_path, ["a", "b"], ["s1", "s2", "s3"])
    interleaved = [jobs[i] for i in (0, 3, 1, 4, 2, 5)]  # a, b, a, b, a, b
    backend = FakeBackend(workers=2)
    outcome = run(tmp_path, interleaved, backend)
    assert len(outcome.records) == 6
    models_of = {w: {j.split("/")[0] for ww, j, _ in backend.log if ww == w} for w in (0, 1)}
    assert models_of == {0: {"a"}, 1: {"b"}}


def test_failed_attempt_is_retried_then_recorded(tmp_path: Path) -> None:
    jobs = jobs_for(tmp_path, ["a"], ["s1", "s2"])
    oom = {
        "category": "cuda_oom",
        "exc_type": "torch.OutOfMemoryError",
        "message": "oom",
        "traceback": "",
    }
    backend = FakeBackend(1, fail={jobs[0].job_id: [oom], jobs[1].job_id: [oom, oom]})
    outcome = run(tmp_path, jobs, backend, max_retries=1)
    assert outcome.records[jobs[0].job_id].state == "complete"
    assert outcome.records[jobs[0].job_id].attempts == 2
    failed = outcome.records[jobs[1].job_id]
    assert (failed.state, failed.category, failed.attempts) == ("failed", "cuda_oom", 2)
    assert (jobs[1].result_dir / "failure.json").exists()
    assert [a for _, j, a in backend.log if j == jobs[0].job_id] == [1, 2]


def test_job_locked_by_another_executor_waits_then_skips_when_completed(tmp_path: Path) -> None:
    jobs = jobs_for(tmp_path, ["a"], ["s1", "s2"])
    jobs[0].result_dir.mkdir(parents=True)
    other = FileLock(jobs[0].result_dir / LOCK_FILE)
    other.acquire()
    backend = FakeBackend(1)

    original_wait = backend.wait

    def wait_then_finish_elsewhere(timeout: float) -> list[BackendEvent]:
        events = original_wait(timeout)
        if other.is_locked and jobs[1].job_id in [j for _, j, _ in backend.log]:
            (jobs[0].result_dir / "metrics.json").write_text("{}")
            (jobs[0].result_dir / "manifest.json").write_text(
                f'{{"fingerprint": "{jobs[0].fingerprint}"}}'
            )
            other.release()  # the other executor finished jobs[0]
        return events

    backend.wait = wait_then_finish_elsewhere  # type: ignore[method-assign]
    outcome = run(tmp_path, jobs, backend)
    assert [j for _, j, _ in backend.log] == [jobs[1].job_id]  # jobs[0] never ran here
    assert outcome.records[jobs[0].job_id].state == "complete"
    assert not outcome.records[jobs[0].job_id].ran


def test_job_changed_by_another_run_after_planning_is_left_alone(tmp_path: Path) -> None:
    """Finished elsewhere with other parameters (stale) or failed there: never run over it."""
    jobs = jobs_for(tmp_path, ["a"], ["s1", "s2", "s3"])
    stale_dir, failed_dir = jobs[0].result_dir, jobs[1].result_dir
    stale_dir.mkdir(parents=True)
    (stale_dir / "manifest.json").write_text('{"fingerprint": "other-parameters"}')
    failed_dir.mkdir(parents=True)
    (failed_dir / "failure.json").write_text(f'{{"fingerprint": "{jobs[1].fingerprint}"}}')
    backend = FakeBackend(1)
    outcome = run(tmp_path, jobs, backend)
    assert [j for _, j, _ in backend.log] == [jobs[2].job_id]
    assert outcome.records[jobs[0].job_id].state == "stale"
    assert outcome.records[jobs[1].job_id].state == "failed"
    assert not outcome.records[jobs[0].job_id].ran and not outcome.records[jobs[1].job_id].ran
    assert json.loads((stale_dir / "manifest.json").read_text()) == {
        "fingerprint": "other-parameters"
    }
    skipped = [e for e in read_events(tmp_path / "results") if e["event"] == "job_skipped"]
    assert {e["job_id"] for e in skipped} == {jobs[0].job_id, jobs[1].job_id}


def test_stale_job_rerun_resets_once_and_retries_from_its_new_partial_state(
    tmp_path: Path,
) -> None:
    """--rerun-stale: old results go before attempt 1; attempt 2 resumes, not skipped."""
    from dataclasses import replace

    from sparse_attention_hub.executor.plan import JobState

    (job,) = jobs_for(tmp_path, ["a"], ["s1"])
    job.result_dir.mkdir(parents=True)
    (job.result_dir / "manifest.json").write_text('{"fingerprint": "old"}')
    (job.result_dir / "predictions.jsonl").write_text('{"sample_id": "1", "prediction": "x"}\n')
    stale = replace(job, state=JobState.STALE)
    died = {"category": "worker_died", "exc_type": "WorkerDied", "message": "", "traceback": ""}

    class PartialThenDie(FakeBackend):
        def wait(self, timeout: float) -> list[BackendEvent]:
            if self.pending and self.pending[0][1].attempts[0] == 1:  # attempt 1: partial results
                (job.result_dir / "config.json").write_text(
                    json.dumps({"job": {"fingerprint": job.fingerprint}})
                )
                (job.result_dir / "predictions.jsonl").write_text('{"sample_id": "1"}\n')
            return super().wait(timeout)

    backend = PartialThenDie(1, fail={job.job_id: [died]})
    outcome = run(tmp_path, [stale], backend, reset={job.job_id})
    assert [a for _, _, a in backend.log] == [1, 2]
    assert outcome.records[job.job_id].state == "complete"
    assert not (job.result_dir / "manifest.json").exists()  # the old one went (fake writes none)


def test_slots_spread_round_robin_with_several_workers_per_gpu() -> None:
    from sparse_attention_hub.executor.backends import slot_layout

    assert [s.device for s in slot_layout([2, 5], 5)] == [
        "cuda:2",
        "cuda:5",
        "cuda:2",
        "cuda:5",
        "cuda:2",
    ]
    assert [s.device for s in slot_layout([], 3)] == ["cpu"] * 3
    assert [s.worker for s in slot_layout([0], 2)] == [0, 1]


class InterruptedShutdown(FakeBackend):
    """A Ctrl-C / SIGTERM lands while the run ends its workers politely."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.shutdowns: list[bool] = []

    def shutdown(self, force: bool = False) -> None:
        self.shutdowns.append(force)
        if not force:
            raise KeyboardInterrupt


def test_an_interrupt_while_ending_workers_ends_them_at_once(tmp_path: Path) -> None:
    jobs = jobs_for(tmp_path, ["a"], ["s1", "s2"])
    backend = InterruptedShutdown(workers=1)
    outcome = run(tmp_path, jobs, backend)  # the interrupt does not escape the run
    assert backend.shutdowns == [False, True]
    assert {r.state for r in outcome.records.values()} == {"complete"}
    for job in jobs:  # every lock was released
        FileLock(job.result_dir / LOCK_FILE, timeout=0).acquire()


class SlowFirstWorker(FakeBackend):
    """Worker 1 is ready at the first wait, worker 0 only at the third."""

    def start(self) -> None:
        self.waits = 0

    def wait(self, timeout: float) -> list[BackendEvent]:
        self.waits += 1
        self.starting = {1: [1], 3: [0]}.get(self.waits, [])
        return super().wait(timeout)


def test_no_worker_gets_a_bundle_before_it_is_ready(tmp_path: Path) -> None:
    """The first queued (costliest) job goes to the worker ready first, not to worker 0."""
    jobs = jobs_for(tmp_path, ["a"], ["s1", "s2", "s3"])
    backend = SlowFirstWorker(workers=2)
    outcome = run(tmp_path, jobs, backend, share_prefill=False)
    assert backend.log[0] == (1, jobs[0].job_id, 1)
    assert {w for w, _, _ in backend.log} == {0, 1}  # worker 0 took work once it was ready
    assert {r.state for r in outcome.records.values()} == {"complete"}
