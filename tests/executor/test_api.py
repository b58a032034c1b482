"""BenchmarkExecutor in-process (debug backend): the Python API, result tree, stale, reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from filelock import FileLock

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor import (
    AdapterConfig,
    BenchmarkConfig,
    BenchmarkExecutor,
    JobState,
    plan,
    spec_from_dict,
)
from sparse_attention_hub.executor.testing import BENCHMARK, FACTORY, executions, experiment


def test_run_benchmark_matrix_python_api_and_result_tree(tmp_path: Path) -> None:
    executor = BenchmarkExecutor(
        gpu_ids=[], max_concurrent_runs=1, base_result_dir=tmp_path, backend="debug"
    )
    results = executor.run_benchmark_matrix(
        model_names=["org/model"],
        sparse_attention_configs=[("dense", None), ("streaming", "streaming")],
        benchmark_configs=[BenchmarkConfig(BENCHMARK["name"], None, BENCHMARK.get("data_path"))],
        adapter_config=AdapterConfig({"answer": "x"}, {}, FACTORY),
        generation_kwargs={"max_new_tokens": 4},
        request_kwargs={"max_requests": 2},
    )
    assert results.ok and len(results.records) == 2
    job_dir = tmp_path / results.records[0].job_id
    assert results.records[0].job_id.startswith("org__model/dense/")
    assert {p.name for p in job_dir.iterdir()} >= {
        "predictions.jsonl",
        "raw_results.csv",
        "metrics.json",
        "config.json",
        "manifest.json",
    }
    with FileLock(job_dir / ".lock", timeout=0):  # released at the end of the run
        pass
    assert {p.name for p in tmp_path.iterdir()} >= {
        "org__model",
        "execution_summary.json",
        "results.csv",
        "status.json",
        "events.jsonl",
    }
    config = json.loads((job_dir / "config.json").read_text())
    assert (
        config["job"]["fingerprint"]
        == json.loads((job_dir / "manifest.json").read_text())["fingerprint"]
    )
    assert config["generation_kwargs"] == {"max_new_tokens": 4}
    frame = results.results_frame()
    assert list(frame.columns) == [
        "model",
        "sparse_config",
        "benchmark",
        "subset",
        "task",
        "metric",
        "value",
    ]
    overall = frame[(frame["metric"] == "overall") & (frame["sparse_config"] == "dense")]
    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert len(overall) == 1 and float(overall["value"].iloc[0]) == pytest.approx(
        metrics["overall"]
    )


def test_stale_job_is_reported_not_overwritten_until_asked(tmp_path: Path) -> None:
    data = experiment(tmp_path, sparse=["a", "b"])
    spec = spec_from_dict(data)
    BenchmarkExecutor(base_result_dir=tmp_path / "results", backend="debug").run(spec)
    changed = spec_from_dict({**data, "generation_kwargs": {"max_new_tokens": 3}})
    assert [j.state for j in plan(changed)] == [JobState.STALE, JobState.STALE]

    results = BenchmarkExecutor(base_result_dir=tmp_path / "results", backend="debug").run(changed)
    assert [r.state for r in results.records] == ["stale", "stale"] and results.counts()["ran"] == 0
    assert [r.error for r in results.records] == ["generation_kwargs changed"] * 2
    assert not results.ok
    assert all(len(executions(tmp_path / "results" / r.job_id)) == 1 for r in results.records)
    summary = json.loads((tmp_path / "results" / "execution_summary.json").read_text())
    assert summary["counts"]["stale"] == 2
    assert summary["jobs"][0]["error"] == "generation_kwargs changed"
    # a partial run (no manifest yet) records its inputs in config.json: the reason is found there
    partial = tmp_path / "results" / results.records[0].job_id
    (partial / "manifest.json").unlink()
    (stale,) = [j for j in plan(changed) if j.job_id == results.records[0].job_id]
    assert stale.state == JobState.STALE and stale.stale_reason() == "generation_kwargs changed"

    rerun = BenchmarkExecutor(
        base_result_dir=tmp_path / "results", backend="debug", rerun_stale=True
    )
    assert rerun.run(changed).ok
    assert [j.state for j in plan(changed)] == [JobState.COMPLETE, JobState.COMPLETE]
    job_dir = tmp_path / "results" / plan(changed)[0].job_id
    assert json.loads((job_dir / "config.json").read_text())["generation_kwargs"] == {
        "max_new_tokens": 3
    }


def test_failed_job_is_skipped_until_rerun_failed(tmp_path: Path) -> None:
    faults = {"/bad/": {"action": "raise", "exc": "builtins.RuntimeError", "times": 2}}
    spec = spec_from_dict(experiment(tmp_path, sparse=["bad"], faults=faults))
    first = BenchmarkExecutor(base_result_dir=tmp_path / "results", backend="debug").run(spec)
    assert first.failed[0].category == "other" and first.failed[0].attempts == 2
    again = BenchmarkExecutor(base_result_dir=tmp_path / "results", backend="debug").run(spec)
    assert again.counts()["ran"] == 0 and again.records[0].state == "failed"
    rerun = BenchmarkExecutor(
        base_result_dir=tmp_path / "results", backend="debug", rerun_failed=True
    )
    assert rerun.run(spec).ok  # the fault only fired twice
    job_dir = tmp_path / "results" / first.records[0].job_id
    assert not (job_dir / "failure.json").exists() and not (job_dir / "error.txt").exists()


def test_invalid_gpu_ids_fail_before_any_work(tmp_path: Path) -> None:
    executor = BenchmarkExecutor(gpu_ids=[7], base_result_dir=tmp_path / "results")
    with pytest.raises(ConfigError, match=r"gpu id\(s\) \[7\] do not exist"):
        executor.run(spec_from_dict(experiment(tmp_path)))
    assert not (tmp_path / "results").exists()


def test_unknown_parameter_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        spec_from_dict(
            {"models": ["m"], "benchmarks": [{"name": "x", "subset": ["a"]}], "gpus": [0]}
        )
    message = str(info.value)
    assert "benchmarks[0].subset: unknown key; allowed: name, subsets" in message
    assert "gpus: unknown key; allowed: models" in message
