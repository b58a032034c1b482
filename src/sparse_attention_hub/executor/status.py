"""status.json of a running executor: counts, ETA, and what each worker is doing.

The scheduler says what changed (`WorkerRow` per slot, the queue, the records so far); this
module turns that into the snapshot `RunRecorder` writes (throttled) and the live display draws.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sparse_attention_hub.executor.eta import WorkClock
from sparse_attention_hub.executor.progress import RunRecorder
from sparse_attention_hub.executor.results import JobRecord


@dataclass(frozen=True)
class WorkerRow:
    """One slot as status.json shows it; `bundle` is None while the worker is idle."""

    worker: int
    device: str
    pid: int | None
    bundle: str | None = None  # the bundle id
    bundle_jobs: tuple[str, ...] = ()  # every job of the bundle (its work, for the ETA)
    running_jobs: tuple[str, ...] = ()  # those not ended yet
    attempt: int | None = None
    dispatched_s: float | None = None  # seconds since the bundle was handed over
    started_s: float | None = None  # seconds since the worker began it (None: not yet)


class StatusBoard:
    """Builds each status snapshot and hands it to the recorder."""

    def __init__(
        self, recorder: RunRecorder, clock: WorkClock, total: int, already_done: int = 0
    ) -> None:
        self.recorder = recorder
        self.clock = clock
        self.total = total
        self.already_done = already_done
        self.started_at = time.monotonic()

    def publish(
        self,
        records: Iterable[JobRecord],
        queued: list[str],
        workers: list[WorkerRow],
        interrupted: bool,
        force: bool = False,
    ) -> None:
        states = [record.state for record in records]
        busy = [row for row in workers if row.bundle is not None]
        counts = {
            "complete": self.already_done + states.count("complete"),
            "failed": states.count("failed"),
            "running": sum(len(row.running_jobs) for row in busy),
            "queued": len(queued),
        }
        eta = self.clock.eta_s(
            queued,
            [(row.bundle_jobs, row.started_s or 0.0) for row in busy],
            max(1, len(workers)),
        )
        self.recorder.status(
            {
                "total": self.total,
                "counts": counts,
                "elapsed_s": time.monotonic() - self.started_at,
                "eta_s": eta,
                "interrupted": interrupted,
                "workers": [
                    {
                        "worker": row.worker,
                        "device": row.device,
                        "pid": row.pid,
                        "job": row.bundle,
                        "jobs": list(row.running_jobs),
                        "attempt": row.attempt,
                        "running_s": row.dispatched_s,
                    }
                    for row in workers
                ],
            },
            force=force,
        )
