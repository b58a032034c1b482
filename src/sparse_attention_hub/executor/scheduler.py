"""The dispatch loop: hand queued bundles to free workers, watch them, retry, record.

Backend-agnostic: it sees workers only through the backend protocol. The queue holds groups of
jobs that differ only in their sparse config (one group per job without `share_prefill`), split
while workers would idle, costliest first (`executor.bundles`). A free worker gets the first
queued group for the model it already holds, else one for a model no worker holds, else the
first, halved first when that ends the run earlier (the last groups keep every worker busy);
the jobs of it this process can claim (`executor.claims`) travel as one `Bundle`. A worker gets
its first bundle once it reports ready, never before: workers start at different speeds, and the
costliest bundle goes to the one ready first. Each job of a bundle ends on its own (finished or
raised); a worker that dies or times out ends every job of its bundle still running, and those
are retried together. status.json is built by `executor.status`, its ETA by `executor.eta`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from filelock import FileLock

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.backends import Backend, BackendEvent
from sparse_attention_hub.executor.bundles import (
    Bundle,
    bundle_key,
    estimate,
    form_groups,
    group_work,
    longest_first,
    split_for_workers,
    split_if_it_pays,
)
from sparse_attention_hub.executor.claims import Claims
from sparse_attention_hub.executor.eta import WorkClock
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
from sparse_attention_hub.executor.results import JobRecord, write_failure
from sparse_attention_hub.executor.slots import Member, Running, WorkerView
from sparse_attention_hub.executor.status import StatusBoard
from sparse_attention_hub.result_files import LOCK_FILE

__all__ = ["LOCK_FILE", "Outcome", "Scheduler"]

logger = logging.getLogger(__name__)


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
        self.poll_s = poll_s
        self.workers = {s.worker: WorkerView(s.device) for s in backend.slots}
        self.estimates = {job.job_id: estimate(job) for job in jobs}
        self.queue: list[list[Job]] = longest_first(
            split_for_workers(form_groups(jobs, share_prefill), len(self.workers), self.estimates),
            self.estimates,
        )
        self.failures: dict[str, list[Failure]] = {}
        self.outcome = Outcome()
        self.clock = WorkClock(self.estimates)
        self.status = StatusBoard(
            recorder, self.clock, total if total is not None else len(jobs), already_done
        )
        self.claims = Claims(jobs, recorder, set(reset or ()))

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

    def _running(self) -> list[Running]:
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
            members = [
                Member(job, len(self.failures.get(job.job_id, [])) + 1, lock)
                for job, lock in picked
            ]
            bundle = Bundle(tuple(m.job for m in members), tuple(m.attempt for m in members))
            view.running = Running(bundle, {m.job.job_id: m for m in members}, time.monotonic())
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

    def _others_free_at(self, view: WorkerView) -> list[float]:
        """When each other worker that can run is free, in work units from now (work clock)."""
        now = time.monotonic()
        return [
            0.0
            if other.running is None
            else self.clock.work_left(
                other.running.bundle.job_ids,
                now - other.running.started if other.running.started else 0.0,
            )
            for other in self.workers.values()
            if other is not view and not other.down
        ]

    def _pick(self, view: WorkerView) -> list[tuple[Job, FileLock]] | None:
        """The lockable jobs of the first group this worker should take (None: nothing now).

        A group is halved first when that ends the run earlier (`split_if_it_pays`): its first
        half goes, the rest stays queued. Near the end that keeps every worker busy.
        """
        held = {w.model_key for w in self.workers.values() if w is not view}
        preferences: list[Callable[[Job], bool]] = [
            lambda j: j.model_key == view.model_key,
            lambda j: j.model_key not in held,
            lambda j: True,
        ]
        for prefer in preferences:
            for group in [g for g in self.queue if prefer(g[0])]:
                if len(group) > 1:
                    index = next(i for i, g in enumerate(self.queue) if g is group)
                    rest = [group_work(g, self.estimates) for g in self.queue if g is not group]
                    others = self._others_free_at(view)
                    pieces = split_if_it_pays(group, rest, others, self.estimates)
                    self.queue[index : index + 1] = pieces
                    group = pieces[0]
                picked = self._lock_group(group)
                if picked:
                    return picked
        return None

    def _lock_group(self, group: list[Job]) -> list[tuple[Job, FileLock]]:
        """Claim what can be claimed of `group` and take it off the queue; the rest stays."""
        picked: list[tuple[Job, FileLock]] = []
        for job in list(group):
            claim = self.claims.claim(job)
            if claim is None:
                continue  # another executor holds it: it stays queued
            group.remove(job)
            if claim.refused is not None:
                self._refuse(job, claim.refused)
            elif claim.left is not None:
                self._record(job, claim.left, ran=False)
            elif claim.lock is not None:
                picked.append((job, claim.lock))
        if not group:
            self.queue = [g for g in self.queue if g is not group]
        return picked

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
            ended = running.take(payload)
            if ended is None:
                return
            view.end_if_done()
            ended.lock.release()
            self.clock.finished(
                ended.job.job_id, float(payload.get("duration_s") or 0.0), len(running.bundle.jobs)
            )
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
            ended = running.take(payload)
            if ended is None:
                return
            view.end_if_done()
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

    def _attempts_failed(self, members: list[Member], failure: Failure, worker: int) -> None:
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
        now = time.monotonic()
        self.status.publish(
            self.outcome.records.values(),
            [job.job_id for group in self.queue for job in group],
            [view.row(worker, now) for worker, view in self.workers.items()],
            self.outcome.interrupted,
            force=force,
        )
