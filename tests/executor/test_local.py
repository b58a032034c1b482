"""The local backend with real spawned worker processes (CPU) and injected faults."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sparse_attention_hub.executor import (
    BenchmarkExecutor,
    ExecutionResults,
    JobState,
    plan,
    spec_from_dict,
)
from sparse_attention_hub.executor.bundles import Bundle
from sparse_attention_hub.executor.testing import (
    answered,
    executions,
    experiment,
    loads_by_pid,
    read_events,
)


def make_spec(base: Path, **kwargs: Any) -> Any:
    return spec_from_dict(experiment(base, **kwargs))


MODELS = ["m1", "m2"]
SPARSE = ["s1", "s2", "s3"]


@pytest.fixture(scope="module")
def matrix_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExecutionResults]:
    """2 models x 3 sparse configs x 1 subset on 2 workers, run once for the tests below."""
    base = tmp_path_factory.mktemp("matrix")
    spec = make_spec(base, models=MODELS, sparse=SPARSE, delay_s=0.05)
    results = BenchmarkExecutor(max_concurrent_runs=2, base_result_dir=base / "results").run(spec)
    return base, results


def test_every_job_runs_exactly_once_across_workers(
    matrix_run: tuple[Path, ExecutionResults],
) -> None:
    base, results = matrix_run
    assert results.ok and len(results.completed) == 6
    runs = {r.job_id: executions(base / "results" / r.job_id) for r in results.records}
    assert all(len(pids) == 1 for pids in runs.values()), runs
    started = [e for e in read_events(base / "results") if e["event"] == "job_started"]
    assert sorted(e["job_id"] for e in started) == sorted(runs)
    assert len({e["pid"] for e in started}) == 2  # both workers took jobs
    for record in results.records:
        manifest = json.loads((base / "results" / record.job_id / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["pid"] == int(runs[record.job_id][0])


def test_model_loads_per_worker_equal_distinct_models_served(
    matrix_run: tuple[Path, ExecutionResults],
) -> None:
    base, _ = matrix_run
    started = [e for e in read_events(base / "results") if e["event"] == "job_started"]
    served: dict[str, set[str]] = {}
    for event in started:
        served.setdefault(str(event["pid"]), set()).add(event["model"])
    loads = loads_by_pid(base)
    assert {pid: len(models) for pid, models in loads.items()} == {
        pid: len(models) for pid, models in served.items()
    }
    # model_loaded events agree with the adapter's own counter file
    loaded = Counter(
        str(e["pid"]) for e in read_events(base / "results") if e["event"] == "model_loaded"
    )
    assert loaded == Counter({pid: len(models) for pid, models in loads.items()})


def test_dataset_loaded_once_per_subset_per_worker(
    matrix_run: tuple[Path, ExecutionResults],
) -> None:
    base, _ = matrix_run
    events = read_events(base / "results")
    loaded = Counter(
        (e["pid"], e["benchmark"], e["subset"]) for e in events if e["event"] == "dataset_loaded"
    )
    assert loaded and set(loaded.values()) == {1}


def test_records_written(matrix_run: tuple[Path, ExecutionResults]) -> None:
    base, results = matrix_run
    result_dir = base / "results"
    summary = json.loads((result_dir / "execution_summary.json").read_text())
    assert summary["counts"]["complete"] == 6 and summary["counts"]["ran"] == 6
    status = json.loads((result_dir / "status.json").read_text())
    assert status["counts"]["complete"] == 6 and status["counts"]["queued"] == 0
    frame = results.results_frame()
    assert set(frame["model"]) == set(MODELS) and set(frame["sparse_config"]) == set(SPARSE)
    assert "overall" in set(frame["metric"])
    assert {p.name for p in (result_dir / "m1" / "s1").iterdir()} >= {
        "mock_benchmark_reading_comprehension"
    }
    # a second run finds everything complete and starts no worker
    again = BenchmarkExecutor(max_concurrent_runs=2, base_result_dir=result_dir).run(
        make_spec(base, models=MODELS, sparse=SPARSE, delay_s=0.05)
    )
    assert again.ok and again.counts()["ran"] == 0
    events = [e for e in read_events(result_dir) if e["run_id"] == again.run_id]
    assert events and not [e for e in events if e["event"] == "worker_started"]
    status = json.loads((result_dir / "status.json").read_text())  # this run's, not the last
    assert status["run_id"] == again.run_id and status["counts"]["complete"] == 6


def test_sigkilled_worker_is_replaced_and_its_job_resumes_on_retry(base: Path) -> None:
    """Killed during its 2nd of 3 requests: the retry generates only what was not saved."""
    faults = {"/b/": {"action": "kill", "on_request": 2}}
    spec = make_spec(base, sparse=["a", "b", "c"], faults=faults, delay_s=0.05)
    executor = (
        BenchmarkExecutor(  # one job per worker: only b's worker dies (bundles: test_bundles)
            max_concurrent_runs=2, base_result_dir=base / "results", share_prefill=False
        )
    )
    results = executor.run(spec)
    assert results.ok, results.to_dict()
    killed = next(r for r in results.records if r.sparse_config == "b")
    assert killed.attempts == 2
    pids = executions(base / "results" / killed.job_id)
    assert len(pids) == 2 and pids[0] != pids[1]
    events = read_events(base / "results")
    died = [e for e in events if e["event"] == "worker_died"]
    assert len(died) == 1 and died[0]["exitcode"] == -9
    retried = [e for e in events if e["event"] == "job_retried"]
    assert [(e["job_id"], e["category"]) for e in retried] == [(killed.job_id, "worker_died")]
    # 2 + the replacement, which may not be ready before the retry ends the run elsewhere
    assert len([e for e in events if e["event"] == "worker_started"]) in (2, 3)
    # mid-job resume: request 1 (samples 1, 2) was answered before the kill and never again
    job_dir = base / "results" / killed.job_id
    assert answered(job_dir) == ["1", "2", "3", "4", "5"]
    saved = [json.loads(line)["sample_id"] for line in (job_dir / "predictions.jsonl").open()]
    assert saved == ["1", "2", "3", "4", "5"]


def test_sigterm_ends_the_run_like_ctrl_c(base: Path) -> None:
    """SIGTERM to the executor's process: dispatch stops, workers end, finished jobs stay."""
    import signal
    import threading

    # one job per dispatch: a bundle of all four would finish together, leaving no job unfinished
    spec = make_spec(base, sparse=["a", "b", "c", "d"], delay_s=0.3)
    result_dir = base / "results"
    late: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: late.append(signum))

    def terminate_after_first_job() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(e["event"] == "job_finished" for e in read_events(result_dir)):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=terminate_after_first_job, daemon=True)
    watcher.start()
    try:
        results = BenchmarkExecutor(
            max_concurrent_runs=1, base_result_dir=result_dir, share_prefill=False
        ).run(spec)
    finally:
        watcher.join(5)
        signal.signal(signal.SIGTERM, previous)
    assert results.interrupted and not late
    done = [r for r in results.records if r.state == "complete"]
    assert 0 < len(done) < 4 and all(r.ran for r in done)
    assert [r.state for r in results.records if r not in done] == ["pending"] * (4 - len(done))
    assert [j.state for j in plan(spec)].count(JobState.COMPLETE) == len(done)
    for event in read_events(result_dir):
        if event["event"] == "worker_started":
            with pytest.raises(ProcessLookupError):
                os.kill(event["pid"], 0)
    summary = json.loads((result_dir / "execution_summary.json").read_text())
    assert summary["interrupted"] is True


def test_job_past_its_timeout_is_killed_and_recorded(base: Path) -> None:
    spec = make_spec(
        base, sparse=["ok", "hangs"], faults={"/hangs/": {"action": "hang", "times": 5}}
    )
    executor = BenchmarkExecutor(
        max_concurrent_runs=2, base_result_dir=base / "results", job_timeout_s=1.5, max_retries=0
    )
    results = executor.run(spec)
    hung = next(r for r in results.records if r.sparse_config == "hangs")
    assert hung.state == "failed" and hung.category == "timeout"
    assert next(r for r in results.records if r.sparse_config == "ok").state == "complete"
    failure = json.loads((base / "results" / hung.job_id / "failure.json").read_text())
    assert failure["category"] == "timeout" and failure["exc_type"] == "JobTimeout"
    assert (base / "results" / hung.job_id / "error.txt").exists()
    pid = int(executions(base / "results" / hung.job_id)[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the hung worker is gone
    # a later run skips the failed job unless asked
    assert plan(spec)[1].state == JobState.FAILED


@pytest.mark.parametrize(
    ("exc", "category", "attempts"),
    [
        ("torch.OutOfMemoryError", "cuda_oom", 2),  # the class decides: the message says nothing
        ("sparse_attention_hub.errors.ConfigError", "config", 1),  # deterministic: no retry
    ],
)
def test_raised_errors_are_categorised_with_traceback(
    base: Path, exc: str, category: str, attempts: int
) -> None:
    faults: dict[str, Any] = {"/bad/": {"action": "raise", "exc": exc, "times": 9}}
    spec = make_spec(base, sparse=["bad"], faults=faults)
    results = BenchmarkExecutor(max_concurrent_runs=1, base_result_dir=base / "results").run(spec)
    (record,) = results.records
    assert (record.state, record.category, record.attempts) == ("failed", category, attempts)
    job_dir = base / "results" / record.job_id
    assert "injected fault" in (job_dir / "error.txt").read_text()
    assert "Traceback" in (job_dir / "error.txt").read_text()
    failure = json.loads((job_dir / "failure.json").read_text())
    assert failure["exc_type"] == exc and len(failure["attempts"]) == attempts
    # after a CUDA OOM the worker drops its model, so the retry loads it again (same process)
    assert [len(models) for models in loads_by_pid(base).values()] == [attempts]


def test_gpu_slot_pins_its_device_before_torch_starts(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `cuda:1` worker sees only the parent's GPU 1 (as cuda:0), from its first instruction;
    a CPU worker starts with its share of the cores. Checked on CPU through the environment."""
    from sparse_attention_hub.executor.backends import Slot
    from sparse_attention_hub.executor.backends.local import LocalBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # the parent's own view: id 1 is device 7
    (job,) = plan(make_spec(base))
    backend = LocalBackend([Slot(0, "cuda:1"), Slot(1, "cpu")], cpu_threads=3)
    backend.start()
    try:
        events: list[Any] = []
        while sum(e.kind == "ready" for e in events) < 2:
            events += backend.wait(30.0)
        pids = {e.worker: e.payload["pid"] for e in events if e.kind == "ready"}
        # /proc/PID/environ is the environment the process was started with (not later changes)
        initial = {w: environ_at_start(pid) for w, pid in pids.items()}
        backend.submit(0, Bundle((job,), (1,)))
        while not any(e.kind in ("finished", "raised", "died") for e in events):
            events += backend.wait(30.0)
    finally:
        backend.shutdown()
    assert initial[0]["CUDA_VISIBLE_DEVICES"] == "7"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7"  # the parent's own is left as it was
    ready = {e.worker: e.payload["device"] for e in events if e.kind == "ready"}
    assert ready == {0: "cuda:1", 1: "cpu"}  # the two workers may report in either order
    threads = {e.worker: e.payload["threads"] for e in events if e.kind == "ready"}
    assert threads[1] == 3  # the CPU worker's share of the cores
    assert events[-1].kind == "finished", events[-1]
    probe = json.loads((job.result_dir / "device.json").read_text())
    assert probe["CUDA_VISIBLE_DEVICES"] == "7"
    assert json.loads((job.result_dir / "manifest.json").read_text())["device"] == "cuda:1"


def environ_at_start(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.parametrize("methods", [["forkserver", "spawn"], ["spawn"]])
def test_cpu_worker_takes_the_parent_environment_of_its_start(
    base: Path, monkeypatch: pytest.MonkeyPatch, methods: list[str]
) -> None:
    """CPU workers are forked from a server started with an earlier environment: each still
    runs with the parent's environment of the moment it starts, and its share of the cores.
    Where there is no forkserver they are spawned, with the same result."""
    from sparse_attention_hub.executor.backends import Slot, local
    from sparse_attention_hub.executor.backends.local import LocalBackend

    monkeypatch.setattr(local, "_START_METHODS", methods)
    monkeypatch.delenv("SAH_TEST_PROBE", raising=False)
    first = LocalBackend([Slot(0, "cpu")], cpu_threads=1)
    first.start()  # starts the server (if no test before did) without the variable
    try:
        while not any(e.kind == "ready" for e in first.wait(30.0)):
            pass
    finally:
        first.shutdown()
    monkeypatch.setenv("SAH_TEST_PROBE", "set after the server started")
    (job,) = plan(make_spec(base))
    backend = LocalBackend([Slot(0, "cpu")], cpu_threads=2)
    backend.start()
    try:
        events: list[Any] = []
        while not any(e.kind == "ready" for e in events):
            events += backend.wait(30.0)
        backend.submit(0, Bundle((job,), (1,)))
        while not any(e.kind in ("finished", "raised", "died") for e in events):
            events += backend.wait(30.0)
    finally:
        backend.shutdown()
    assert events[-1].kind == "finished", events[-1]
    probe = json.loads((job.result_dir / "device.json").read_text())
    assert probe["SAH_TEST_PROBE"] == "set after the server started"
    assert probe["threads"] == 2


def test_cpu_workers_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from sparse_attention_hub.executor.backends import Slot, local
    from sparse_attention_hub.executor.backends.local import LocalBackend, worker_environment

    monkeypatch.setattr(local, "usable_cores", lambda: 16)
    assert LocalBackend([Slot(0, "cpu")]).cpu_threads == 16
    assert LocalBackend([Slot(i, "cpu") for i in range(3)]).cpu_threads == 5
    assert worker_environment("cpu", 5, {})["OMP_NUM_THREADS"] == "5"
    assert worker_environment("cuda:2", 5, {}) == {"CUDA_VISIBLE_DEVICES": "2"}
    uuids = {"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}
    assert worker_environment("cuda:1", 5, uuids) == {"CUDA_VISIBLE_DEVICES": "GPU-bb"}


def test_job_sent_to_a_worker_that_just_died_is_retried_not_a_crash(base: Path) -> None:
    """The worker dies between the backend's last look and the next submit (OOM killer, say)."""
    import signal

    from sparse_attention_hub.executor.backends import Slot
    from sparse_attention_hub.executor.backends.local import LocalBackend

    (job,) = plan(make_spec(base))
    backend = LocalBackend([Slot(0, "cpu")])
    backend.start()
    try:
        events: list[Any] = []
        while not events:
            events += backend.wait(30.0)
        process = backend._handles[0].process
        os.kill(events[0].payload["pid"], signal.SIGKILL)
        while process.is_alive():
            time.sleep(0.02)
        backend.submit(0, Bundle((job,), (1,)))  # the pipe is broken: must not raise
        events = backend.wait(30.0)
    finally:
        backend.shutdown(force=True)
    assert [(e.kind, e.payload.get("exitcode")) for e in events] == [("died", -9)]


def test_a_stopped_worker_ends_at_once_with_its_output_flushed() -> None:
    """`_exit_now` skips the interpreter's teardown: exit code 0, and nothing written to the
    standard streams or through logging before it is lost (stdout to a pipe is buffered)."""
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "from sparse_attention_hub.executor.backends.local import _exit_now\n"
        "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "sys.stdout.write('last answer')\n"
        "logging.getLogger('w').warning('last warning')\n"
        "_exit_now()\n"
        "sys.stdout.write('never')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "last answer", "last warning\n")
