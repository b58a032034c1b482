"""Result trees written the way the executor writes them (its own writers where it has one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparse_attention_hub.executor.failures import Failure
from sparse_attention_hub.executor.results import write_failure, write_manifest
from sparse_attention_hub.files import write_json_atomic

MODEL = "org/tiny"


class TreeBuilder:
    """`add(config, subset, score=..., density=...)` writes one job dir of `base`."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def job_dir(self, config: str, subset: str, benchmark: str = "mock_benchmark") -> Path:
        return self.base / MODEL.replace("/", "__") / config / f"{benchmark}_{subset}"

    def add(
        self,
        config: str,
        subset: str,
        score: float = 50.0,
        density: float = 1.0,
        benchmark: str = "mock_benchmark",
        layers: int = 2,
        timing: dict[str, float] | None = None,
        output_error: float | None = None,
    ) -> Path:
        job = self.job_dir(config, subset, benchmark)
        self.started(config, subset, benchmark, answers=3)
        stats = [
            {"sample_id": str(s), "layer": layer, "density": density, "output_error": output_error}
            for s in range(3)
            for layer in range(layers)
        ]
        (job / "attention_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stats))
        metrics: dict[str, Any] = {
            "overall": score,
            "tasks": {subset: {"score": score, "n_scored": 3}},
            "density": {"overall": density, "per_layer": {str(i): density for i in range(layers)}},
        }
        if timing is not None:
            metrics["timing"] = timing
        write_json_atomic(job / "metrics.json", metrics)
        write_manifest(
            job,
            {
                "job_id": f"{MODEL}/{config}/{benchmark}_{subset}",
                "fingerprint": "f" * 16,
                "model": MODEL,
                "sparse_config": config,
                "benchmark": benchmark,
                "subset": subset,
                "device": "cpu",
                "duration_s": 6.0,
                "finished_at": "2026-12-02T10:00:00+00:00",
                "overall": score,
            },
        )
        return job

    def started(
        self, config: str, subset: str, benchmark: str = "mock_benchmark", answers: int = 1
    ) -> Path:
        """A job that began (config.json, some answers) and has not finished."""
        job = self.job_dir(config, subset, benchmark)
        job.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            job / "config.json",
            {
                "benchmark": benchmark,
                "subsets": [subset],
                "model": MODEL,
                "generation_kwargs": {"max_new_tokens": 8},
                "request_kwargs": {},
                "versions": {"torch": "2.13.0", "sparse-attention-hub": "0.1.0"},
                "adapter": {"source": "/models/tiny", "source_kind": "local", "dtype": "float32"},
                "job": {
                    "fingerprint": "f" * 16,
                    "sparse_config_name": config,
                    "sparse_config": None
                    if config == "dense"
                    else {"masker_configs": [{"type": "sink", "sink_size": 4}]},
                    "device": "cpu",
                },
            },
        )
        lines = "".join(json.dumps({"sample_id": str(i)}) + "\n" for i in range(answers))
        (job / "predictions.jsonl").write_text(lines)
        return job

    def fail(self, config: str, subset: str, benchmark: str = "mock_benchmark") -> Path:
        job = self.started(config, subset, benchmark)
        failure = Failure("cuda_oom", "OutOfMemoryError", "CUDA out of memory", "Traceback ...")
        write_failure(job, "f" * 16, [failure])
        return job


@pytest.fixture
def tree(tmp_path: Path) -> TreeBuilder:
    return TreeBuilder(tmp_path / "results")
