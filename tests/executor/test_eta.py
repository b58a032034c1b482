"""The work clock behind status.json's ETA: plan estimates calibrated by finished jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.executor.test_scheduler import FakeBackend, jobs_for

from sparse_attention_hub.executor.backends import BackendEvent
from sparse_attention_hub.executor.eta import WorkClock
from sparse_attention_hub.executor.progress import RunRecorder
from sparse_attention_hub.executor.scheduler import Scheduler


def test_a_bundled_job_counts_its_share_of_the_worker() -> None:
    clock = WorkClock({"a": 2.0, "b": 2.0, "c": 2.0, "d": 2.0, "e": 4.0})
    assert clock.seconds_per_unit is None
    assert clock.eta_s(["e"], [], workers=1) is None  # nothing to calibrate with yet
    for job in "abcd":  # a bundle of four that took 8 s: each job used 2 s of the worker
        clock.finished(job, 8.0, bundle_size=4)
    assert clock.seconds_per_unit == pytest.approx(1.0)
    assert clock.eta_s(["e"], [], workers=1) == pytest.approx(4.0)


def test_eta_spreads_the_work_left_but_waits_for_the_longest_bundle() -> None:
    clock = WorkClock({"done": 1.0, "big": 10.0, "q1": 1.0, "q2": 1.0})
    clock.finished("done", 1.0, bundle_size=1)
    # `big` has run 4 s of its 10: 6 left, more than (6 + 2) / 2 workers
    assert clock.work_left(["big"], 4.0) == pytest.approx(6.0)
    assert clock.eta_s(["q1", "q2"], [(["big"], 4.0)], workers=2) == pytest.approx(6.0)
    assert clock.eta_s(["q1", "q2"], [(["big"], 4.0)], workers=1) == pytest.approx(8.0)
    assert clock.work_left(["big"], 60.0) == 0.0  # overran its estimate: never negative


class StatusLog(RunRecorder):
    def __init__(self, base: Path) -> None:
        super().__init__(base, "test", min_interval_s=0)
        self.snapshots: list[dict[str, Any]] = []

    def status(self, snapshot: dict[str, Any], force: bool = False) -> None:
        self.snapshots.append(snapshot)
        super().status(snapshot, force)


def test_eta_of_a_bundled_run_is_not_multiplied_by_the_bundle_size(tmp_path: Path) -> None:
    # Two bundles of four jobs on one worker; each bundle takes 4 s, so each of its jobs
    # finishes 4 s after the bundle started. While the second runs, 4 s are left, not 16.
    jobs = jobs_for(tmp_path, ["a", "b"], ["s1", "s2", "s3", "s4"])
    backend = FakeBackend(workers=1)
    finish_all = backend.wait

    def bundles_of_four_seconds(timeout: float) -> list[BackendEvent]:
        return [
            BackendEvent(e.worker, e.kind, {**e.payload, "duration_s": 4.0})
            if e.kind == "finished"
            else e
            for e in finish_all(timeout)
        ]

    backend.wait = bundles_of_four_seconds  # type: ignore[method-assign]
    recorder = StatusLog(tmp_path / "results")
    try:
        Scheduler(jobs, backend, recorder, poll_s=0.01).run()
    finally:
        recorder.close()
    assert backend.bundles == [[j.job_id for j in jobs[:4]], [j.job_id for j in jobs[4:]]]
    (second,) = [
        s
        for s in recorder.snapshots
        if s["counts"]["complete"] == 4 and s["counts"]["running"] == 4
    ]
    assert second["eta_s"] == pytest.approx(4.0)
