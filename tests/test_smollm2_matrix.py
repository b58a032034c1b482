"""The embedded SmolLM2 through the whole stack: executor -> adapter -> sparse maskers -> scores.

Runs in the default suite (about a minute on 2 CPU cores once the de-quantised weights are
cached) because it is the one test that shows the product's promise on a real model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sparse_attention_hub import (
    BenchmarkConfig,
    BenchmarkExecutor,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    get_preset,
)


@pytest.mark.e2e
def test_smollm2_mock_benchmark_dense_streaming_topk_and_full_budget(tmp_path: Path) -> None:
    executor = BenchmarkExecutor(base_result_dir=tmp_path, backend="debug", progress=False)
    full_budget = ResearchAttentionConfig(masker_configs=[SinkMaskerConfig(sink_size=1.0)])
    results = executor.run_benchmark_matrix(
        model_names=["smollm2-135m-instruct"],
        sparse_attention_configs=[
            ("dense", None),
            ("streaming", get_preset("streaming")),
            ("oracle_topk", get_preset("oracle_topk")),
            ("full_budget", full_budget),
        ],
        benchmark_configs=[BenchmarkConfig("mock_benchmark")],
        generation_kwargs={"max_new_tokens": 24},
    )
    assert results.ok, results.failed

    def job_dir(name: str) -> Path:
        return tmp_path / "smollm2-135m-instruct" / name / "mock_benchmark_reading_comprehension"

    def answers(name: str) -> dict[str, str]:
        lines = (job_dir(name) / "predictions.jsonl").read_text().splitlines()
        return {r["sample_id"]: r["prediction"] for r in map(json.loads, lines)}

    dense = answers("dense")
    assert len(dense) == 5 and all(dense.values())
    assert answers("full_budget") == dense  # a full budget is dense attention, token for token
    for name in ("dense", "full_budget", "streaming", "oracle_topk"):
        metrics = json.loads((job_dir(name) / "metrics.json").read_text())
        assert metrics["tasks"]["reading_comprehension"]["n_scored"] == 5
        density = metrics["density"]["overall"]
        if name in ("dense", "full_budget"):
            assert density == pytest.approx(1.0)
        else:  # contexts are ~120 tokens: the presets keep a real fraction of the keys
            assert 0.0 < density < 1.0
    # The model reads these short passages well enough to get some right with dense attention.
    assert json.loads((job_dir("dense") / "metrics.json").read_text())["overall"] > 0
    table = pd.read_csv(tmp_path / "results.csv", keep_default_na=False)
    assert set(table["sparse_config"]) == {"dense", "streaming", "oracle_topk", "full_budget"}
