"""What the scheduler knows of each worker slot: its process, its model, the bundle it runs."""

from __future__ import annotations

from dataclasses import dataclass

from filelock import FileLock

from sparse_attention_hub.executor.bundles import Bundle
from sparse_attention_hub.executor.plan import Job
from sparse_attention_hub.executor.status import WorkerRow


@dataclass
class Member:
    """A job of a running bundle, with its attempt number and the lock this run holds on it."""

    job: Job
    attempt: int
    lock: FileLock


@dataclass
class Running:
    bundle: Bundle
    members: dict[str, Member]  # the jobs of the bundle not ended yet, by id
    dispatched: float  # monotonic times
    started: float | None = None

    def deadline(self, job_timeout_s: float) -> float | None:
        """A bundle of n jobs may take n job timeouts (its jobs run interleaved)."""
        if self.started is None:
            return None
        return self.started + job_timeout_s * len(self.bundle.jobs)

    def take(self, payload: dict[str, object]) -> Member | None:
        """The member an event names, removed from those still running (None: not ours)."""
        return self.members.pop(str(payload.get("job_id")), None)


@dataclass
class WorkerView:
    device: str
    pid: int | None = None
    model_key: str | None = None
    running: Running | None = None
    # no bundle until it reports ready: a worker still starting (the first ready one takes the
    # costliest bundle), or a replacement that may never start (a Ray node left)
    down: bool = True

    def end_if_done(self) -> None:
        if self.running is not None and not self.running.members:
            self.running = None  # every job of the bundle ended: the worker is free

    def row(self, worker: int, now: float) -> WorkerRow:
        """This slot as status.json shows it at monotonic time `now`."""
        running = self.running
        if running is None:
            return WorkerRow(worker, self.device, self.pid)
        return WorkerRow(
            worker,
            self.device,
            self.pid,
            bundle=running.bundle.bundle_id,
            bundle_jobs=tuple(running.bundle.job_ids),
            running_jobs=tuple(running.members),
            attempt=max(running.bundle.attempts),
            dispatched_s=now - running.dispatched,
            started_s=None if running.started is None else now - running.started,
        )
