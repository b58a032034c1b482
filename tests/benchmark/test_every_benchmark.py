"""Every registered benchmark, generically: it loads offline, runs end to end and scores.

A new benchmark is covered the day it is registered. Give it fixture files in its hub schema
under `tests/fixtures/<name>/` (one file per subset), unless it builds its rows itself; only a
benchmark whose fixture needs options or another path gets an entry in `FIXTURE_ARGS`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark import create_benchmark_instance, list_benchmarks
from sparse_attention_hub.benchmark.base import Benchmark

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# name -> (fixture dir relative to FIXTURES, options); default: (<name>, {}) when that dir exists.
FIXTURE_ARGS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "zero_scrolls": (
        "zero_scrolls/validation",
        {"split": "validation"},
    ),  # test answers are private
    "ruler_synthetic": (None, {"context_lengths": [1024], "num_samples": 2}),
}


def _instance(name: str, tokenizer_dir: Path, subsets: list[str] | None = None) -> Benchmark:
    folder, options = FIXTURE_ARGS.get(name, (name, {}))
    data_path = FIXTURES / folder if folder is not None and (FIXTURES / folder).is_dir() else None
    if name == "ruler_synthetic":
        options = {**options, "tokenizer": str(tokenizer_dir)}
    return create_benchmark_instance(name, subsets, data_path, **options)


def _subsets_with_data(name: str, tokenizer_dir: Path) -> list[str]:
    """The subsets the fixture holds (every subset, for benchmarks that build their rows)."""
    bench = _instance(name, tokenizer_dir)
    if bench.data_path is None:
        return list(bench.all_datasets)
    files = {path.stem for path in bench.data_path.rglob("*") if path.is_file()}
    return [subset for subset in bench.all_datasets if subset in files]


def _gold_text(value: Any) -> str:
    """The first gold answer as plain text (lists, arrays and JSON-encoded lists unwrapped)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = list(value.tolist() if hasattr(value, "tolist") else value)
        return _gold_text(items[0]) if items else ""
    return str(value)


@pytest.mark.parametrize("name", sorted(list_benchmarks()))
def test_benchmark_loads_runs_and_scores(
    name: str, tmp_path: Path, chat_tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAH_CACHE_DIR", str(tmp_path / "cache"))
    subsets = _subsets_with_data(name, chat_tokenizer_dir)
    assert subsets, f"{name}: no fixture under tests/fixtures/{name}/ and no rows of its own"
    bench = _instance(name, chat_tokenizer_dir, subsets)
    samples = bench.load_samples()
    assert set(samples["subset"]) == set(subsets)
    for column in ("context", "question", "answer_prefix", "sample_id", "task", "max_new_tokens"):
        assert column in samples.columns, f"{name}: rows lack {column!r}"
    assert not samples.duplicated(["subset", "sample_id"]).any()

    # the whole job contract, with a model that answers nothing
    metrics = bench.run_benchmark(ScriptedAdapter(default=""), tmp_path / "job", {}, {})
    for file in ("predictions.jsonl", "raw_results.csv", "metrics.json", "config.json"):
        assert (tmp_path / "job" / file).is_file(), f"{name}: {file} not written"
    assert (
        json.loads((tmp_path / "job" / "metrics.json").read_text())["overall"]
        == (metrics["overall"])
    )
    answered = (tmp_path / "job" / "predictions.jsonl").read_text().splitlines()
    assert len(answered) == len(samples)

    # scoring is a pure function of the predictions: gold answers score at least as well as none
    gold_column = "answers" if "answers" in samples.columns else "answer"
    empty = bench.post_run_evaluate(samples.assign(prediction=""))
    gold = bench.post_run_evaluate(
        samples.assign(prediction=[_gold_text(v) for v in samples[gold_column]])
    )
    scores = pd.to_numeric(bench.last_scored["score"], errors="coerce").dropna()  # type: ignore[index]
    assert ((scores >= 0) & (scores <= 1)).all()
    for result in (empty, gold):
        assert result["benchmark"] == name and result["scale"] == "0-100"
        overall = result["overall"]
        assert overall is None or 0 <= overall <= 100
    if gold["overall"] is not None and empty["overall"] is not None:
        assert gold["overall"] >= empty["overall"] - 1e-9
        assert not math.isnan(gold["overall"])
