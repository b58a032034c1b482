"""The dispatch loop: hand queued bundles to free workers, watch them, retry, record.

Backend-agnostic: it sees workers only through the backend protocol. The queue holds groups of
jobs that differ only in their sparse config (one group per job without `share_prefill`), split
while workers would idle, costliest first (`executor.bundles`). A free worker gets the first
queued group for the model it already holds, else one for a model no worker holds, else the
first; the jobs of it this process can lock travel as one `Bundle`. Each job of a bundle ends
on its own (finished or raised); a worker that dies or times out ends every job of its bundle
still running, and those are retried together. A job runs only while this process holds its
lock, so two executors on one result dir never run the same job. After locking, the job's state is read again: if another run changed
it since planning (finished it, possibly with other parameters, or recorded its failure), the job
is left as that run left it, never resumed from or overwritten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from filelock import FileLock, Timeout

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.backends import Backend, BackendEvent
from sparse_attention_hub.executor.bundles import (
    Bundle,
    bundle_key,
    estimate,
    form_groups,
    longest_first,
    split_for_workers,
)
from sparse_attention_hub.executor.confine import check_inside, job_root
from sparse_attention_hub.executor.failures import (
    CONFIG,
    CUDA_OOM,
    Failure,
    failure_from_exit,
    failure_from_timeout,
    retryable,
)
from sparse_attention_hub.executor.plan import Job
from sparse_attention_hub.executor.progress import RunRecorder
from sparse_attention_hub.executor.results import (
    JobRecord,
    job_state,
    reset_job_dir,
    write_failure,
)
from sparse_attention_hub.result_files import JOB_FILES, LOCK_FILE

logger = logging.getLogger(__name__)

LOCK_RETRY_S = 1.0


@dataclass
class _Member:
    job: Job
    attempt: int
    lock: FileLock


@dataclass
class _Running:
    bundle: Bundle
    members: dict[str, _Member]  # the jobs of the bundle not ended yet, by id
    dispatched: float
    started: float | None = None

    def deadline(self, job_timeout_s: float) -> float | None:
        """A bundle of n jobs may take n job timeouts (its jobs run interleaved)."""
        if self.started is None:
            return None
        return self.started + job_timeout_s * len(self.bundle.jobs)


@dataclass
class _WorkerView:
    device: str
    pid: int | None = None
    model_key: str | None = None
    running: _Running | None = None
    down: bool = False  # its replacement may never start (a Ray node left): no job until ready


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
        share_prefill: bool = True,
    ) -> None:
        self.backend = backend
        self.share_prefill = share_prefill
        self.recorder = recorder
        self.max_retries = max_retries
        self.job_timeout_s = job_timeout_s
        self.reset = set(reset or ())
        self.poll_s = poll_s
        self.workers = {s.worker: _WorkerView(s.device) for s in backend.slots}
        self.estimates = {job.job_id: estimate(job) for job in jobs}
        self.queue: list[list[Job]] = longest_first(
            split_for_workers(form_groups(jobs, share_prefill), len(self.workers), self.estimates),
            self.estimates,
        )
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
            self.backend.shutdown()  # a Ray backend may hold a session it started
            return self.outcome
        drained = False  # only a loop that ran out of work may end its workers politely
        try:
            self.backend.start()
            while self.queue or self._running():
                self._dispatch()  # first after any event: a freed worker waits on nothing else
                self._publish()
                for event in self.backend.wait(self._wait_timeout()):
                    self._handle(event)
                self._check_timeouts()
            drained = True
        except KeyboardInterrupt:
            self.outcome.interrupted = True
            logger.warning("interrupted: stopping dispatch and ending workers")
            self.recorder.event(
                "interrupted", running=[i for r in self._running() for i in r.members]
            )
        finally:
            self._end_workers(force=not drained)
            for running in self._running():
                for member in running.members.values():
                    member.lock.release()
            self._publish(force=True)
        return self.outcome

    def _end_workers(self, force: bool) -> None:
        """End every worker; a Ctrl-C or SIGTERM that lands meanwhile ends them at once instead
        of escaping the run half-way through its cleanup (locks held, no summary written)."""
        while True:
            try:
                self.backend.shutdown(force=force)
                return
            except KeyboardInterrupt:
                logger.warning("interrupted while ending workers: ending them at once")
                force = True

    def _running(self) -> list[_Running]:
        return [w.running for w in self.workers.values() if w.running is not None]

    def _wait_timeout(self) -> float:
        timeout = self.poll_s if self.queue else 1.0
        if self.job_timeout_s is not None:
            for running in self._running():
                deadline = running.deadline(self.job_timeout_s)
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        return timeout

    # ----- dispatch ------------------------------------------------------------------------
    def _dispatch(self) -> None:
        idle = sum(view.running is None and not view.down for view in self.workers.values())
        if idle > len(self.queue):  # fewer groups than idle workers: split rather than idle
            self.queue = split_for_workers(self.queue, idle, self.estimates)
        for worker, view in self.workers.items():
            if view.running is not None or view.down or not self.queue:
                continue
            picked = self._pick(view)
            if picked is None:
                return
            members = []
            for job, lock in picked:
                attempt = len(self.failures.get(job.job_id, [])) + 1
                if job.job_id in self.reset:
                    reset_job_dir(job.result_dir)  # --rerun-stale: the old results go
                    self.reset.discard(job.job_id)
                    self.expected[job.job_id] = "pending"
                members.append(_Member(job, attempt, lock))
            bundle = Bundle(tuple(m.job for m in members), tuple(m.attempt for m in members))
            view.running = _Running(bundle, {m.job.job_id: m for m in members}, time.monotonic())
            view.model_key = bundle.jobs[0].model_key
            self.backend.submit(worker, bundle)
            if len(members) > 1:
                self.recorder.event(
                    "bundle_dispatched",
                    bundle=bundle.bundle_id,
                    job_ids=bundle.job_ids,
                    worker=worker,
                )
            for member in members:
                self.recorder.event(
                    "job_dispatched",
                    job_id=member.job.job_id,
                    worker=worker,
                    attempt=member.attempt,
                    bundle=bundle.bundle_id,
                )

    def _pick(self, view: _WorkerView) -> list[tuple[Job, FileLock]] | None:
        """The lockable jobs of the first group this worker should take (None: nothing now)."""
        held = {w.model_key for w in self.workers.values() if w is not view}
        preferences: list[Callable[[Job], bool]] = [
            lambda j: j.model_key == view.model_key,
            lambda j: j.model_key not in held,
            lambda j: True,
        ]
        for prefer in preferences:
            for group in [g for g in self.queue if prefer(g[0])]:
                picked = self._lock_group(group)
                if picked:
                    return picked
        return None

    def _lock_group(self, group: list[Job]) -> list[tuple[Job, FileLock]]:
        """Lock what can be locked of `group` and take it off the queue; the rest stays."""
        now = time.monotonic()
        picked: list[tuple[Job, FileLock]] = []
        for job in list(group):
            if self._locked_until.get(job.job_id, 0.0) > now:
                continue
            try:
                check_inside(job_root(job), job.result_dir, (*JOB_FILES, LOCK_FILE))
                lock = self._try_lock(job)
            except (ConfigError, OSError) as exc:  # a link out of the tree; an unwritable dir
                group.remove(job)
                self._refuse(job, exc)
                continue
            if lock is None:
                continue
            group.remove(job)
            state = job_state(job.result_dir, job.fingerprint)
            expected = self.expected.get(job.job_id, state)
            if state != expected:
                lock.release()  # another executor finished (or failed) it meanwhile
                self._record(job, state, ran=False)
                self.recorder.event(
                    "job_skipped",
                    job_id=job.job_id,
                    reason=f"another run left it {state} (planned {expected})",
                )
                continue
            picked.append((job, lock))
        if not group:
            self.queue = [g for g in self.queue if g is not group]
        return picked

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

    def _refuse(self, job: Job, exc: Exception) -> None:
        """Record a job that may not run here; nothing is written in (or through) its dir."""
        message = str(exc) if isinstance(exc, ConfigError) else f"{job.result_dir}: {exc}"
        self._record(job, "failed", ran=False, category=CONFIG, error=message)
        self.recorder.event("job_refused", job_id=job.job_id, message=message)
        logger.error("refused %s: %s", job.job_id, message)

    # ----- events --------------------------------------------------------------------------
    def _handle(self, event: BackendEvent) -> None:
        view = self.workers[event.worker]
        running = view.running
        payload = event.payload
        if event.kind == "ready":
            view.pid, view.down = payload.get("pid"), False
            self.recorder.event(
                "worker_started", worker=event.worker, pid=view.pid, device=view.device
            )
        elif event.kind == "started" and running is not None:
            running.started = time.monotonic()
            for member in running.members.values():
                self.recorder.event(
                    "job_started",
                    job_id=member.job.job_id,
                    worker=event.worker,
                    pid=view.pid,
                    device=view.device,
                    model=member.job.model,
                    attempt=member.attempt,
                    bundle=running.bundle.bundle_id,
                )
        elif event.kind in ("model_loaded", "dataset_loaded"):
            self.recorder.event(event.kind, worker=event.worker, pid=view.pid, **payload)
        elif event.kind == "finished" and running is not None:
            ended = _take(running, payload)
            if ended is None:
                return
            self._end_if_done(view)
            ended.lock.release()
            self.durations.append(float(payload.get("duration_s", 0.0)))
            self._record(
                ended.job,
                "complete",
                ran=True,
                attempts=ended.attempt,
                duration_s=payload.get("duration_s"),
                timing=payload.get("timing"),
            )
            self.recorder.event(
                "job_finished",
                job_id=ended.job.job_id,
                worker=event.worker,
                duration_s=payload.get("duration_s"),
                overall=payload.get("overall"),
                bundle=running.bundle.bundle_id,
            )
        elif event.kind == "raised" and running is not None:
            ended = _take(running, payload)
            if ended is None:
                return
            self._end_if_done(view)
            failure = Failure(**payload["failure"])
            if failure.category == CUDA_OOM:
                view.model_key = None  # the worker drops its model after the bundle
            self._attempts_failed([ended], failure, event.worker)
        elif event.kind == "died":
            self.recorder.event("worker_died", worker=event.worker, pid=view.pid, **payload)
            view.pid, view.model_key, view.running = None, None, None
            view.down = bool(payload.get("wait_ready"))
            if running is not None and running.members:
                failure = failure_from_exit(payload.get("exitcode"), payload.get("reason"))
                self._attempts_failed(list(running.members.values()), failure, event.worker)

    @staticmethod
    def _end_if_done(view: _WorkerView) -> None:
        if view.running is not None and not view.running.members:
            view.running = None  # every job of the bundle ended: the worker is free

    def _check_timeouts(self) -> None:
        if self.job_timeout_s is None:
            return
        now = time.monotonic()
        for worker, view in self.workers.items():
            running = view.running
            if running is None:
                continue
            deadline = running.deadline(self.job_timeout_s)
            if deadline is not None and now > deadline:
                logger.warning(
                    "bundle %s passed its %.0f s timeout (%.0f s per job)",
                    running.bundle.bundle_id,
                    deadline - (running.started or now),
                    self.job_timeout_s,
                )
                self.backend.cancel(worker)
                view.pid, view.model_key, view.running = None, None, None
                failure = failure_from_timeout(self.job_timeout_s)
                self._attempts_failed(list(running.members.values()), failure, worker)

    def _attempts_failed(self, members: list[_Member], failure: Failure, worker: int) -> None:
        """Each job's attempt failed: retried (together, first in the queue) or recorded."""
        retry: list[Job] = []
        for member in members:
            job = member.job
            member.lock.release()
            attempts = self.failures.setdefault(job.job_id, [])
            attempts.append(failure)
            fields = {
                "job_id": job.job_id,
                "worker": worker,
                "attempt": member.attempt,
                "category": failure.category,
                "exc_type": failure.exc_type,
                "message": failure.message,
            }
            if retryable(failure.category) and len(attempts) <= self.max_retries:
                retry.append(job)
                self.recorder.event("job_retried", **fields)
                continue
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
        for group in reversed(form_groups(retry, self.share_prefill)):
            front = self.queue[0] if self.queue else None
            if self.share_prefill and front and bundle_key(front[0]) == bundle_key(group[0]):
                front += group  # jobs of one bundle that raised one by one retry together
            else:
                self.queue.insert(0, group)

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
        running_jobs = sum(len(r.members) for r in running)
        queued = sum(len(group) for group in self.queue)
        counts = {
            "complete": self.already_done + states.count("complete"),
            "failed": states.count("failed"),
            "running": running_jobs,
            "queued": queued,
        }
        now = time.monotonic()
        mean = sum(self.durations) / len(self.durations) if self.durations else None
        eta = None
        if mean is not None:
            eta = (queued + running_jobs) * mean / max(1, len(self.workers))
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
                        "job": view.running.bundle.bundle_id if view.running else None,
                        "jobs": list(view.running.members) if view.running else [],
                        "attempt": max(view.running.bundle.attempts) if view.running else None,
                        "running_s": now - view.running.dispatched if view.running else None,
                    }
                    for worker, view in self.workers.items()
                ],
            },
            force=force,
        )


def _take(running: _Running, payload: dict[str, object]) -> _Member | None:
    """The bundle member an event names, removed from those still running."""
    job_id = str(payload.get("job_id"))
    return running.members.pop(job_id) if job_id in running.members else None
