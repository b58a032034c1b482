"""Jobs of one benchmark run as a bundle on the tiny Llama: one context prefill per request,
answers and statistics exactly those of separate runs, each job resuming on its own."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sparse_attention_hub.benchmark.bundle import JobTarget, run_jobs, timing_totals
from sparse_attention_hub.benchmark.registry import create_benchmark_instance
from sparse_attention_hub.sparse_attention import get_preset

CONFIGS = {
    "dense": None,
    "streaming": get_preset("streaming"),
    "sampling": get_preset("random_sampling"),  # seeded per question id
}
GENERATION = {"max_new_tokens": 5}
CONTEXTS = 3  # mock_benchmark: 5 questions about 3 contexts


@pytest.fixture(scope="module")
def adapter(tiny_llama_dir: Path) -> Any:
    from sparse_attention_hub.adapters.hf import ModelAdapterHF

    return ModelAdapterHF(str(tiny_llama_dir))


@contextmanager
def counted_prefills(adapter: Any) -> Iterator[list[int]]:
    """Context lengths of every dense context prefill the adapter runs; checks that no other
    context cache is alive when one is prefilled (one context cache at a time)."""
    calls: list[int] = []
    alive: list[weakref.ref[Any]] = []
    original = adapter._prefill_context

    def counting(ids: list[int]) -> Any:
        gc.collect()
        assert not [ref for ref in alive if ref() is not None], "two context caches at once"
        calls.append(len(ids))
        context = original(ids)
        alive.append(weakref.ref(context.cache))
        return context

    adapter._prefill_context = counting
    try:
        yield calls
    finally:
        del adapter._prefill_context


def predictions(job_dir: Path) -> list[tuple[str, str]]:
    lines = (job_dir / "predictions.jsonl").read_text().splitlines()
    return [(r["sample_id"], r["prediction"]) for r in map(json.loads, lines)]


def bundle(
    adapter: Any, base: Path, names: list[str], request_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    outcome: dict[str, Any] = {}
    run_jobs(
        create_benchmark_instance("mock_benchmark"),
        adapter,
        [JobTarget(base / name, CONFIGS[name]) for name in names],
        GENERATION,
        request_kwargs or {},
        lambda index, result: outcome.__setitem__(names[index], result),
    )
    return outcome


def test_a_bundle_answers_like_separate_runs_with_one_prefill_per_context(
    adapter: Any, tmp_path: Path
) -> None:
    alone: dict[str, Any] = {}
    with counted_prefills(adapter) as separate:
        for name, config in CONFIGS.items():
            adapter.set_sparse_attention_config(config)
            benchmark = create_benchmark_instance("mock_benchmark")
            alone[name] = benchmark.run_benchmark(adapter, tmp_path / "alone" / name, GENERATION)
    with counted_prefills(adapter) as shared:
        together = bundle(adapter, tmp_path / "bundle", list(CONFIGS))
    assert len(separate) == CONTEXTS * len(CONFIGS) and len(shared) == CONTEXTS
    for name in CONFIGS:
        assert predictions(tmp_path / "bundle" / name) == predictions(tmp_path / "alone" / name)
        # each job has its own statistics: the same as its separate run, not a mix
        assert together[name]["density"] == alone[name]["density"]
        assert together[name]["n_calls"] == alone[name]["n_calls"]
        timing = together[name]["timing"]
        assert timing["contexts_prefilled"] == pytest.approx(CONTEXTS / len(CONFIGS))
        assert timing["tokens_generated"] > 0 and timing["decode_s"] > 0
        assert alone[name]["timing"]["contexts_prefilled"] == pytest.approx(CONTEXTS)
    assert predictions(tmp_path / "bundle" / "sampling") != predictions(
        tmp_path / "bundle" / "dense"
    )
    assert together["dense"]["density"]["overall"] == 1.0
    assert 0 < together["streaming"]["density"]["overall"] < 1
    stats = (tmp_path / "bundle" / "streaming" / "attention_stats.jsonl").read_text()
    assert stats and not (tmp_path / "bundle" / "dense" / "attention_stats.jsonl").read_text()


def test_a_half_done_member_resumes_from_its_own_predictions(adapter: Any, tmp_path: Path) -> None:
    first = bundle(adapter, tmp_path, ["streaming"], {"max_requests": 2})  # the first context
    assert len(predictions(tmp_path / "streaming")) == 2 and first["streaming"]["overall"] >= 0
    with counted_prefills(adapter) as prefills:
        outcome = bundle(adapter, tmp_path, ["dense", "streaming", "sampling"])
    assert len(prefills) == CONTEXTS  # the first context is still needed by dense and sampling
    for name in CONFIGS:
        ids = [sample_id for sample_id, _ in predictions(tmp_path / name)]
        assert sorted(ids) == ["1", "2", "3", "4", "5"]  # none asked twice
    records = [json.loads(line) for line in (tmp_path / "streaming" / "predictions.jsonl").open()]
    # 1 context alone, then 2 contexts shared by 3: timing covers every saved answer
    assert outcome["streaming"]["timing"]["contexts_prefilled"] == pytest.approx(1 + 2 / 3)
    assert timing_totals(records) == outcome["streaming"]["timing"]


def test_a_member_that_raises_ends_only_its_own_job(
    adapter: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sampling config raises on its second request; the others finish their jobs."""
    original: Callable[..., Any] = adapter.process_request
    calls = {"n": 0}

    def failing(request: Any, *args: Any, **kwargs: Any) -> Any:
        if adapter.sparse_attention_config is CONFIGS["sampling"]:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("injected")
        return original(request, *args, **kwargs)

    monkeypatch.setattr(adapter, "process_request", failing)
    outcome = bundle(adapter, tmp_path, list(CONFIGS))
    assert isinstance(outcome["sampling"], RuntimeError)
    assert outcome["dense"]["tasks"]["reading_comprehension"]["n_scored"] == 5
    assert outcome["streaming"]["tasks"]["reading_comprehension"]["n_scored"] == 5
    assert len(predictions(tmp_path / "sampling")) == 2  # its first request's answers stay
    assert not (tmp_path / "sampling" / "metrics.json").exists()
