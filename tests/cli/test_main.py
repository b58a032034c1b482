"""`sah`: list, run --dry-run, status, config errors, and real runs in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparse_attention_hub.benchmark import list_benchmarks
from sparse_attention_hub.cli.main import main
from sparse_attention_hub.executor import plan, spec_from_dict
from sparse_attention_hub.executor.testing import BENCHMARK, executions, experiment, read_events
from sparse_attention_hub.sparse_attention import list_presets

SAH = [sys.executable, "-m", "sparse_attention_hub.cli.main"]


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def sah(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SAH, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_list_benchmarks_shows_subsets_and_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "benchmarks"]) == 0
    out = capsys.readouterr().out
    for name, subsets in list_benchmarks().items():
        assert name in out and subsets[0] in out
    assert "qa_f1" in out


def test_list_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_presets())
    assert "sink(sink_size=4)" in out


def test_dry_run_prints_plan_with_states(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = experiment(tmp_path, sparse=["a", "b", "c"])
    jobs = plan(spec_from_dict(data))
    (jobs[0].result_dir).mkdir(parents=True)
    (jobs[0].result_dir / "manifest.json").write_text(
        json.dumps({"fingerprint": jobs[0].fingerprint})
    )
    (jobs[0].result_dir / "metrics.json").write_text("{}")
    (jobs[1].result_dir).mkdir(parents=True)
    (jobs[1].result_dir / "manifest.json").write_text(json.dumps({"fingerprint": "changed"}))
    assert main(["run", str(write_yaml(tmp_path / "exp.yaml", data)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 jobs: 1 complete, 1 stale, 1 pending, 0 failed; would run 1" in out
    assert jobs[2].job_id in out
    assert f"{jobs[1].job_id}  (parameters changed)" in out  # no recorded inputs to compare
    assert not (tmp_path / "results" / "events.jsonl").exists()  # a dry run runs nothing


def test_config_errors_all_reported_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = experiment(
        tmp_path, benchmarks=[{"name": "nope"}, {"name": BENCHMARK["name"], "subsets": ["zz"]}]
    )
    assert main(["run", str(write_yaml(tmp_path / "exp.yaml", data))]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "'nope'" in err and "'zz'" in err
    good = write_yaml(tmp_path / "good.yaml", experiment(tmp_path))
    assert main(["run", str(good), "--max-concurrent-runs", "0"]) == 2
    assert "max_concurrent_runs" in capsys.readouterr().err
    assert main(["run", str(good), "--gpus", "99"]) == 2
    assert "gpu id(s) [99] do not exist" in capsys.readouterr().err
    bad = tmp_path / "dup.yaml"
    bad.write_text("models: [m]\nmodels: [n]\nbenchmarks: [{name: x}]\n")
    assert main(["run", str(bad)]) == 2
    assert "duplicate key 'models'" in capsys.readouterr().err


def test_run_then_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    faults = {
        "/bad/": {
            "action": "raise",
            "exc": "sparse_attention_hub.errors.DatasetLoadError",
            "times": 9,
        }
    }
    data = experiment(tmp_path, sparse=["good", "bad"], faults=faults)
    exp = write_yaml(tmp_path / "exp.yaml", data)
    assert main(["run", str(exp), "--debug", "--no-progress", "--max-retries", "0"]) == 1
    out = capsys.readouterr().out
    assert "2 jobs: 1 complete, 1 failed" in out and "[dataset]" in out
    assert main(["status", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert (
        "1 complete" in out and "1 failed" in out and "[dataset]" in out and "results.csv:" in out
    )


def wait_for(predicate: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)


def test_ctrl_c_then_second_run_completes_exactly_the_missing_jobs(tmp_path: Path) -> None:
    # one job per dispatch: a bundle's four jobs finish within a moment of each other
    data = experiment(
        tmp_path, sparse=["a", "b", "c", "d"], delay_s=0.25, execution={"share_prefill": False}
    )
    exp = write_yaml(tmp_path / "exp.yaml", data)
    results = tmp_path / "results"
    first = sah("run", str(exp), "--no-progress", "--max-concurrent-runs", "1")
    wait_for(lambda: any(e["event"] == "job_finished" for e in read_events(results)))
    first.send_signal(signal.SIGINT)
    out, _ = first.communicate(timeout=30)
    assert first.returncode == 130, out
    workers = [e["pid"] for e in read_events(results) if e["event"] == "worker_started"]
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # no orphaned worker
    jobs = plan(spec_from_dict(data))
    done = {j.job_id for j in jobs if (j.result_dir / "manifest.json").exists()}
    assert 0 < len(done) < len(jobs)

    second = sah("run", str(exp), "--no-progress", "--max-concurrent-runs", "1")
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    events = read_events(results)
    run_id = events[-1]["run_id"]
    started = {e["job_id"] for e in events if e["event"] == "job_started" and e["run_id"] == run_id}
    assert started == {j.job_id for j in jobs} - done
    assert all((j.result_dir / "manifest.json").exists() for j in jobs)
    for job in jobs:  # finished jobs ran once; the interrupted one at most twice (resumed)
        runs = len(executions(job.result_dir))
        assert runs == 1 if job.job_id in done else 1 <= runs <= 2


def test_two_executors_on_one_dir_never_run_a_job_twice(tmp_path: Path) -> None:
    data = experiment(tmp_path, sparse=[f"s{i}" for i in range(6)], delay_s=0.25)
    exp = write_yaml(tmp_path / "exp.yaml", data)
    runs = [sah("run", str(exp), "--no-progress", "--max-concurrent-runs", "1") for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    jobs = plan(spec_from_dict(data))
    assert [len(executions(j.result_dir)) for j in jobs] == [1] * len(jobs)
    started = [e for e in read_events(tmp_path / "results") if e["event"] == "job_started"]
    assert sorted(e["job_id"] for e in started) == sorted(j.job_id for j in jobs)
