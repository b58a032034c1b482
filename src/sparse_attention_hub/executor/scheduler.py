"""The dispatch loop: hand queued jobs to free workers, watch them, retry, record.

Backend-agnostic: it sees workers only through the backend protocol. A free worker gets the
first queued job for the model it already holds, else one for a model no worker holds, else the
first job. A job runs only while this process holds its lock, so two executors on one result
dir never run the same job. After locking, the job's state is read again: if another run changed
it since planning (finished it, possibly with other parameters, or recorded its failure), the job
is left as that run left it, never resumed from or overwritten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from filelock import FileLock, Timeout

from sparse_attention_hub.executor.backends import Backend, BackendEvent
from sparse_attention_hub.executor.failures import (
    CUDA_OOM,
    Failure,
    failure_from_exit,
    failure_from_timeout,
    retryable,
)
from sparse_attention_hub.executor.plan import Job
from sparse_attention_hub.executor.progress import RunRecorder
from sparse_attention_hub.executor.results import JobRecord, job_state, reset_job_dir, write_failure

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
LOCK_RETRY_S = 1.0


@dataclass
class _Running:
    job: Job
    attempt: int
    lock: FileLock
    dispatched: float
    started: float | None = None


@dataclass
class _WorkerView:
    device: str
    pid: int | None = None
    model_key: str | None = None
    running: _Running | None = None


@dataclass
class Outcome:
    """How each job of this run ended (complete, failed, or absent = still pending)."""

    records: dict[str, JobRecord] = field(default_factory=dict)
    interrupted: bool = False


class Scheduler:
    def __init__(
        self,
        jobs: list[Job],
        backend: Backend,
        recorder: RunRecorder,
        max_retries: int = 1,
        job_timeout_s: float | None = None,
        reset: set[str] | None = None,
        already_done: int = 0,
        total: int | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.queue = list(jobs)
        self.backend = backend
        self.recorder = recorder
        self.max_retries = max_retries
        self.job_timeout_s = job_timeout_s
        self.reset = set(reset or ())
        self.poll_s = poll_s
        self.workers = {s.worker: _WorkerView(s.device) for s in backend.slots}
        self.failures: dict[str, list[Failure]] = {}
        self.outcome = Outcome()
        self.already_done = already_done
        self.total = total if total is not None else len(jobs)
        self.durations: list[float] = []
        # The state each job may be run from: its planned state, `pending` once a stale job's
        # old results are removed. Anything else on disk was written by another run meanwhile.
        self.expected = {j.job_id: j.state.value for j in jobs}
        self._locked_until: dict[str, float] = {}
        self._reported_locked: set[str] = set()
        self.started_at = time.monotonic()

    # ----- main loop -----------------------------------------------------------------------
    def run(self) -> Outcome:
        if not self.queue:  # nothing to do: start no worker, but say so in status.json
            self._publish(force=True)
            return self.outcome
        drained = False  # only a loop that ran out of work may end its workers politely
        try:
            self.backend.start()
            while self.queue or self._running():
                self._dispatch()
                for event in self.backend.wait(self._wait_timeout()):
                    self._handle(event)
                self._check_timeouts()
                self._publish()
            drained = True
        except KeyboardInterrupt:
            self.outcome.interrupted = True
            logger.warning("interrupted: stopping dispatch and ending workers")
            self.recorder.event("interrupted", running=[r.job.job_id for r in self._running()])
        finally:
            self.backend.shutdown(force=not drained)
            for running in self._running():
                running.lock.release()
            self._publish(force=True)
        return self.outcome

    def _running(self) -> list[_Running]:
        return [w.running for w in self.workers.values() if w.running is not None]

    def _wait_timeout(self) -> float:
        timeout = self.poll_s if self.queue else 1.0
        if self.job_timeout_s is not None:
            for running in self._running():
                if running.started is not None:
                    left = running.started + self.job_timeout_s - time.monotonic()
                    timeout = min(timeout, max(0.0, left))
        return timeout

    # ----- dispatch ------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for worker, view in self.workers.items():
            if view.running is not None or not self.queue:
                continue
            picked = self._pick(view)
            if picked is None:
                return
            job, lock = picked
            attempt = len(self.failures.get(job.job_id, [])) + 1
            if job.job_id in self.reset:
                reset_job_dir(job.result_dir)  # --rerun-stale: the old results go
                self.reset.discard(job.job_id)
                self.expected[job.job_id] = "pending"
            view.running = _Running(job, attempt, lock, time.monotonic())
            view.model_key = job.model_key
            self.backend.submit(worker, job, attempt)
            self.recorder.event("job_dispatched", job_id=job.job_id, worker=worker, attempt=attempt)

    def _pick(self, view: _WorkerView) -> tuple[Job, FileLock] | None:
        held = {w.model_key for w in self.workers.values() if w is not view}
        preferences: list[Callable[[Job], bool]] = [
            lambda j: j.model_key == view.model_key,
            lambda j: j.model_key not in held,
            lambda j: True,
        ]
        now = time.monotonic()
        for prefer in preferences:
            for job in [j for j in self.queue if prefer(j)]:
                if self._locked_until.get(job.job_id, 0.0) > now:
                    continue
                lock = self._try_lock(job)
                if lock is None:
                    continue
                state = job_state(job.result_dir, job.fingerprint)
                expected = self.expected.get(job.job_id, state)
                if state != expected:
                    lock.release()  # another executor finished (or failed) it meanwhile
                    self.queue.remove(job)
                    self._record(job, state, ran=False)
                    self.recorder.event(
                        "job_skipped",
                        job_id=job.job_id,
                        reason=f"another run left it {state} (planned {expected})",
                    )
                    continue
                self.queue.remove(job)
                return job, lock
        return None

    def _try_lock(self, job: Job) -> FileLock | None:
        job.result_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(job.result_dir / LOCK_FILE, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            self._locked_until[job.job_id] = time.monotonic() + LOCK_RETRY_S
            if job.job_id not in self._reported_locked:  # once, not on every retry
                self._reported_locked.add(job.job_id)
                self.recorder.event("job_locked", job_id=job.job_id)
            return None
        return lock

    # ----- events --------------------------------------------------------------------------
    def _handle(self, event: BackendEvent) -> None:
        view = self.workers[event.worker]
        running = view.running
        payload = event.payload
        if event.kind == "ready":
            view.pid = payload.get("pid")
            self.recorder.event(
                "worker_started", worker=event.worker, pid=view.pid, device=view.device
            )
        elif event.kind == "started" and running is not None:
            running.started = time.monotonic()
            self.recorder.event(
                "job_started",
                job_id=running.job.job_id,
                worker=event.worker,
                pid=view.pid,
                device=view.device,
                model=running.job.model,
                attempt=running.attempt,
            )
        elif event.kind in ("model_loaded", "dataset_loaded"):
            self.recorder.event(event.kind, worker=event.worker, pid=view.pid, **payload)
        elif event.kind == "finished" and running is not None:
            view.running = None
            running.lock.release()
            self.durations.append(float(payload.get("duration_s", 0.0)))
            self._record(
                running.job,
                "complete",
                ran=True,
                attempts=running.attempt,
                duration_s=payload.get("duration_s"),
            )
            self.recorder.event(
                "job_finished",
                job_id=running.job.job_id,
                worker=event.worker,
                duration_s=payload.get("duration_s"),
                overall=payload.get("overall"),
            )
        elif event.kind == "raised" and running is not None:
            view.running = None
            failure = Failure(**payload["failure"])
            if failure.category == CUDA_OOM:
                view.model_key = None  # the worker dropped its model
            self._attempt_failed(running, failure, event.worker)
        elif event.kind == "died":
            self.recorder.event("worker_died", worker=event.worker, pid=view.pid, **payload)
            view.pid, view.model_key, view.running = None, None, None
            if running is not None:
                self._attempt_failed(
                    running, failure_from_exit(payload.get("exitcode")), event.worker
                )

    def _check_timeouts(self) -> None:
        if self.job_timeout_s is None:
            return
        now = time.monotonic()
        for worker, view in self.workers.items():
            running = view.running
            if running is None or running.started is None:
                continue
            if now - running.started > self.job_timeout_s:
                logger.warning(
                    "job %s passed its %.0f s timeout", running.job.job_id, self.job_timeout_s
                )
                self.backend.cancel(worker)
                view.pid, view.model_key, view.running = None, None, None
                self._attempt_failed(running, failure_from_timeout(self.job_timeout_s), worker)

    def _attempt_failed(self, running: _Running, failure: Failure, worker: int) -> None:
        job = running.job
        running.lock.release()
        attempts = self.failures.setdefault(job.job_id, [])
        attempts.append(failure)
        fields = {
            "job_id": job.job_id,
            "worker": worker,
            "attempt": running.attempt,
            "category": failure.category,
            "exc_type": failure.exc_type,
            "message": failure.message,
        }
        if retryable(failure.category) and len(attempts) <= self.max_retries:
            self.queue.insert(0, job)
            self.recorder.event("job_retried", **fields)
            return
        write_failure(job.result_dir, job.fingerprint, attempts)
        self._record(
            job,
            "failed",
            ran=True,
            attempts=len(attempts),
            category=failure.category,
            error=f"{failure.exc_type}: {failure.message}",
        )
        self.recorder.event("job_failed", **fields)

    def _record(self, job: Job, state: str, ran: bool, **fields: object) -> None:
        self.outcome.records[job.job_id] = JobRecord(
            job_id=job.job_id,
            model=job.model,
            sparse_config=job.sparse_name,
            benchmark=job.benchmark,
            subset=job.subset,
            state=state,
            ran=ran,
            **fields,  # type: ignore[arg-type]
        )

    # ----- status --------------------------------------------------------------------------
    def _publish(self, force: bool = False) -> None:
        states = [r.state for r in self.outcome.records.values()]
        running = self._running()
        counts = {
            "complete": self.already_done + states.count("complete"),
            "failed": states.count("failed"),
            "running": len(running),
            "queued": len(self.queue),
        }
        now = time.monotonic()
        mean = sum(self.durations) / len(self.durations) if self.durations else None
        eta = None
        if mean is not None:
            eta = (len(self.queue) + len(running)) * mean / max(1, len(self.workers))
        self.recorder.status(
            {
                "total": self.total,
                "counts": counts,
                "elapsed_s": now - self.started_at,
                "eta_s": eta,
                "interrupted": self.outcome.interrupted,
                "workers": [
                    {
                        "worker": worker,
                        "device": view.device,
                        "pid": view.pid,
                        "job": view.running.job.job_id if view.running else None,
                        "attempt": view.running.attempt if view.running else None,
                        "running_s": now - view.running.dispatched if view.running else None,
                    }
                    for worker, view in self.workers.items()
                ],
            },
            force=force,
        )
