"""Shared by the Ray tests: the quickstart-sized matrix, its predictions, a mid-job killer."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparse_attention_hub.executor import BenchmarkExecutor, ExecutionResults, spec_from_dict
from sparse_attention_hub.executor.testing import read_events

RAY_INIT = {"include_dashboard": False, "log_to_driver": False, "object_store_memory": 80 << 20}


def quickstart_matrix(tmp: Path, model_dir: Path, result_dir: Path) -> dict[str, Any]:
    """examples/quickstart.yaml's shape: 3 sparse configs x (mock + 2 RULER tasks), tiny model."""
    return {
        "models": [str(model_dir)],
        "sparse_configs": {"dense": None, "streaming": "streaming", "oracle_topk": "oracle_topk"},
        "benchmarks": [
            {"name": "mock_benchmark"},
            {
                "name": "ruler_synthetic",
                "subsets": ["niah_single_1", "niah_single_2"],
                "options": {
                    "context_lengths": [512],
                    "num_samples": 1,
                    "cache_dir": str(tmp / "ruler_cache"),
                },
            },
        ],
        "generation_kwargs": {"max_new_tokens": 4},
        "result_dir": str(result_dir),
    }


def local_reference(tmp: Path, model_dir: Path) -> ExecutionResults:
    """The quickstart matrix on the local backend, run once per test session (both Ray modules
    compare against it); `tmp` is the session's base temp dir."""
    data = quickstart_matrix(tmp, model_dir, tmp / "ray_local_reference")
    spec = spec_from_dict(data)
    return BenchmarkExecutor(
        max_concurrent_runs=2, base_result_dir=data["result_dir"], progress=False
    ).run(spec)  # a second call finds every job complete and runs nothing


def run_matrix(data: dict[str, Any], **executor: Any) -> ExecutionResults:
    spec = spec_from_dict(data)
    return BenchmarkExecutor(base_result_dir=data["result_dir"], progress=False, **executor).run(
        spec
    )


def predictions(results: ExecutionResults) -> dict[str, dict[tuple[str, str], str]]:
    """Every complete job's predictions by (subset, sample id)."""
    out = {}
    for record in results.completed:
        path = results.result_dir / record.job_id / "predictions.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        out[record.job_id] = {(r["subset"], r["sample_id"]): r["prediction"] for r in rows}
    return out


def scores(results: ExecutionResults) -> Any:
    """results.csv without the timing rows (seconds differ from run to run)."""
    frame = results.results_frame()
    return frame[~frame["metric"].str.startswith("timing/")].reset_index(drop=True)


def kill_mid_job(
    result_dir: Path,
    job_id: str,
    kill: Callable[[int], None],
    saved: list[str],
    timeout_s: float = 120.0,
) -> threading.Thread:
    """Once `job_id` has saved an answer in the driver's tree, `kill(pid of its actor)`.

    `saved` gets the sample ids the driver's predictions.jsonl held just before the kill.
    """

    def watch() -> None:
        path = result_dir / job_id / "predictions.jsonl"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            started = [
                e
                for e in read_events(result_dir)
                if e["event"] == "job_started" and e["job_id"] == job_id
            ]
            lines = path.read_text().splitlines() if path.exists() else []
            if started and started[0]["pid"] and lines:
                saved.extend(json.loads(line)["sample_id"] for line in lines)
                kill(int(started[0]["pid"]))
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def saved_ids(job_dir: Path) -> list[str]:
    lines = (job_dir / "predictions.jsonl").read_text().splitlines()
    return [json.loads(line)["sample_id"] for line in lines]


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
