"""How much of a run is left: in the plan's work units, and in seconds once jobs have finished.

The plan knows each job's work (samples x context tokens, `bundles.estimate`); finished jobs say
how many worker-seconds one unit takes here. The jobs of a bundle share one worker (requests
outer, configs inner) and all end near its end, so a job that finished `duration_s` after its
bundle started used only `duration_s / n` of the worker (n jobs in the bundle): counting its whole
duration, as if it had run alone, overestimates the rest of the run n-fold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass
class WorkClock:
    """Worker-seconds per unit of estimated work, learnt from the jobs that finished."""

    estimates: Mapping[str, float]
    spent_s: float = 0.0  # worker-seconds the finished jobs used
    done: float = 0.0  # their estimated work

    def work(self, job_ids: Iterable[str]) -> float:
        """The estimated work of these jobs (1.0 for a job without an estimate)."""
        return sum(self.estimates.get(job_id, 1.0) for job_id in job_ids)

    def finished(self, job_id: str, duration_s: float, bundle_size: int) -> None:
        """A job ended `duration_s` after its bundle of `bundle_size` jobs started."""
        self.spent_s += max(0.0, duration_s) / max(1, bundle_size)
        self.done += self.work([job_id])

    @property
    def seconds_per_unit(self) -> float | None:
        """None until a job has finished (nothing to calibrate with)."""
        if self.done <= 0 or self.spent_s <= 0:
            return None
        return self.spent_s / self.done

    def work_left(self, job_ids: Sequence[str], elapsed_s: float) -> float:
        """What a running bundle has left: its work less what `elapsed_s` of it did."""
        total = self.work(job_ids)
        rate = self.seconds_per_unit
        return total if rate is None else max(0.0, total - elapsed_s / rate)

    def eta_s(
        self,
        queued: Iterable[str],
        running: Iterable[tuple[Sequence[str], float]],
        workers: int,
    ) -> float | None:
        """Seconds until the run ends: the work left spread over the workers, but never less
        than the longest running bundle needs. `running`: (the bundle's job ids, seconds since
        it started) per busy worker. None before the first job finished."""
        rate = self.seconds_per_unit
        if rate is None:
            return None
        left = [self.work_left(job_ids, elapsed) for job_ids, elapsed in running]
        total = sum(left) + self.work(queued)
        return rate * max(max(left, default=0.0), total / max(1, workers))
