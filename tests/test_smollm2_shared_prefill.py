"""SmolLM2 through the executor, with and without a shared context prefill: the same answers,
token for token, for dense, two top-k configs and a seeded sampling masker (greedy decoding).

Slow (two SmolLM2 matrices on CPU); the tiny-Llama version in tests/benchmark/test_bundle.py runs
in the default suite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparse_attention_hub import (
    BenchmarkConfig,
    BenchmarkExecutor,
    ResearchAttentionConfig,
    get_preset,
)

SUBSET = "mock_benchmark_reading_comprehension"


@pytest.mark.slow
@pytest.mark.e2e
def test_smollm2_answers_are_identical_with_one_shared_prefill(tmp_path: Path) -> None:
    sampling = get_preset("random_sampling")
    assert isinstance(sampling, ResearchAttentionConfig)
    configs = [
        ("dense", None),
        ("streaming", get_preset("streaming")),
        ("oracle_topk", get_preset("oracle_topk")),
        ("sampling", sampling.model_copy(update={"seed": 7})),  # a fixed, non-default seed
    ]
    runs = {}
    for share in (True, False):
        base = tmp_path / ("shared" if share else "separate")
        executor = BenchmarkExecutor(
            base_result_dir=base, backend="debug", progress=False, share_prefill=share
        )
        results = executor.run_benchmark_matrix(
            model_names=["smollm2-135m-instruct"],
            sparse_attention_configs=configs,
            benchmark_configs=[BenchmarkConfig("mock_benchmark")],
            generation_kwargs={"max_new_tokens": 24},
        )
        assert results.ok, results.failed
        runs[share] = (base, results)

    def answers(base: Path, name: str) -> dict[str, str]:
        lines = (base / "smollm2-135m-instruct" / name / SUBSET / "predictions.jsonl").open()
        return {r["sample_id"]: r["prediction"] for r in map(json.loads, lines)}

    shared, separate = runs[True][0], runs[False][0]
    for name, _ in configs:
        assert answers(shared, name) == answers(separate, name), name
        assert len(answers(shared, name)) == 5
    assert answers(shared, "sampling") != answers(shared, "dense")
    # 3 contexts: prefilled 3 times for the 4 configs together, 12 times one config at a time
    assert runs[True][1].timing_totals()["contexts_prefilled"] == pytest.approx(3)
    assert runs[False][1].timing_totals()["contexts_prefilled"] == pytest.approx(12)
    events = [json.loads(line) for line in (shared / "events.jsonl").open()]
    (bundle,) = [e for e in events if e["event"] == "bundle_dispatched"]
    assert len(bundle["job_ids"]) == 4
