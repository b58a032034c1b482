"""The benchmark registry: every benchmark discovered, and clear errors for bad names/options."""

from __future__ import annotations

import pytest

from sparse_attention_hub.benchmark import create_benchmark_instance, list_benchmarks
from sparse_attention_hub.benchmark.registry import benchmark_options, get_benchmark_class
from sparse_attention_hub.errors import ConfigError, UnknownNameError


def test_every_benchmark_of_the_spec_is_registered() -> None:
    assert set(list_benchmarks()) >= {
        "longbench", "longbenchv2", "infinite_bench", "loogle", "ruler", "zero_scrolls",
        "aime2024", "aime2025", "mock_benchmark", "ruler_synthetic",
    }  # fmt: skip
    assert list_benchmarks()["ruler"] == ["4096", "8192", "16384", "32768"]


def test_unknown_benchmark_and_subset_list_what_exists() -> None:
    with pytest.raises(UnknownNameError, match="mock_benchmark"):
        create_benchmark_instance("mock_benchmarks")
    with pytest.raises(UnknownNameError, match="reading_comprehension"):
        create_benchmark_instance("mock_benchmark", ["reading"])


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"\['splits'\].*its options: split"):
        create_benchmark_instance("zero_scrolls", splits="validation")
    with pytest.raises(ConfigError, match=r"\['seed'\].*its options: none"):
        create_benchmark_instance("mock_benchmark", seed=1)
    assert benchmark_options(get_benchmark_class("ruler_synthetic")) == [
        "context_lengths", "num_samples", "seed", "tokenizer", "template_overhead", "cache_dir",
    ]  # fmt: skip
    bench = create_benchmark_instance("zero_scrolls", ["qasper"], split="validation")
    assert bench.options()["split"] == "validation"
