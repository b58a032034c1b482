"""Attention statistics of a real job on the tiny Llama: a resumed job keeps what it measured."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sparse_attention_hub.benchmark import create_benchmark_instance
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.sparse_attention import STATS_FILENAME, get_preset

GENERATION = {"max_new_tokens": 3}


def run_job(adapter: Any, job_dir: Path) -> dict[str, Any]:
    benchmark = create_benchmark_instance("mock_benchmark")
    metrics: dict[str, Any] = benchmark.run_benchmark(adapter, job_dir, GENERATION)
    return metrics


def test_resumed_job_keeps_the_statistics_of_saved_answers(
    make_tiny_adapter: Callable[..., Any], tmp_path: Path
) -> None:
    adapter = make_tiny_adapter(sparse_attention_config=get_preset("random_sampling"))
    whole = run_job(adapter, tmp_path / "whole")
    assert whole["n_calls"] > 0 and whole["density"]["overall"] < 1.0

    # a crash after the first two answers (samples 1 and 2), with sample 3's statistics flushed
    # but its answer not saved: the resume must keep 1 and 2, drop 3 and redo 3, 4, 5
    job = tmp_path / "resumed"
    run_job(adapter, job)
    predictions = (job / "predictions.jsonl").read_text().splitlines()
    (job / "predictions.jsonl").write_text("\n".join(predictions[:2]) + "\n")
    (job / "metrics.json").unlink()
    stats_lines = (job / STATS_FILENAME).read_text().splitlines()
    (job / STATS_FILENAME).write_text("\n".join(stats_lines) + '\n{"sample_id": "4", "la')
    resumed = run_job(adapter, job)

    assert resumed["n_calls"] == whole["n_calls"]
    assert resumed["density"] == whole["density"]
    lines = [json.loads(line) for line in (job / STATS_FILENAME).read_text().splitlines()]
    whole_lines = (tmp_path / "whole" / STATS_FILENAME).read_text().splitlines()
    assert len(lines) == len(whole_lines)
    answered = [line["sample_id"] for line in lines if "question_totals" in line]
    assert sorted(answered) == ["1", "2", "3", "4", "5"]


def test_attention_memory_option_is_checked_before_loading(
    make_tiny_adapter: Callable[..., Any],
) -> None:
    for bad in (0, -5, 1.5, True, "512"):
        with pytest.raises(ConfigError, match=r"attention_memory_mib must be an int >= 1"):
            make_tiny_adapter(attention_memory_mib=bad)
