"""The live display and the run records it sits beside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparse_attention_hub.executor.progress import ProgressDisplay, RunRecorder


def test_display_shows_overall_bar_eta_and_one_line_per_worker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    display = ProgressDisplay()
    display.update(
        {
            "total": 10,
            "counts": {"complete": 2, "failed": 1, "running": 1, "queued": 6},
            "eta_s": 42.4,
            "workers": [
                {"worker": 0, "device": "cuda:1", "job": "m/s/bench_x", "running_s": 3.2},
                {"worker": 1, "device": "cuda:1", "job": None, "running_s": None},
            ],
        }
    )
    display.stop()
    err = capsys.readouterr().err
    assert "3/10" in err and "ETA 42s" in err and "failed 1" in err
    assert "worker 0  cuda:1  m/s/bench_x  3s" in err
    assert "worker 1  cuda:1  idle" in err


def test_recorder_appends_events_and_replaces_status_whole(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path, "run1", min_interval_s=3600)
    recorder.event("job_started", job_id="a")
    recorder.status({"counts": {"complete": 0}})
    recorder.status({"counts": {"complete": 1}})  # throttled: not written yet
    assert json.loads((tmp_path / "status.json").read_text())["counts"] == {"complete": 0}
    recorder.close()  # the last snapshot is always written
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["run_id"] == "run1" and status["counts"] == {"complete": 1}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    (event,) = [json.loads(line) for line in (tmp_path / "events.jsonl").open()]
    assert (event["event"], event["job_id"], event["run_id"]) == ("job_started", "a", "run1")


def test_first_status_is_written_whatever_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A machine booted seconds ago has a small monotonic clock; the first status must not be throttled.
    monkeypatch.setattr("sparse_attention_hub.executor.progress.time.monotonic", lambda: 5.0)
    recorder = RunRecorder(tmp_path, "run1", min_interval_s=3600)
    recorder.status({"counts": {"complete": 0}})
    assert json.loads((tmp_path / "status.json").read_text())["counts"] == {"complete": 0}
    recorder.close()
