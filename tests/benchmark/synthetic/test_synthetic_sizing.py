"""Sizing: the largest haystack under a token budget, per-sample shrink/grow, token counting."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparse_attention_hub.benchmark.synthetic.sizing import (
    count_tokens,
    fit_samples,
    largest_fitting,
    tokenizer_fingerprint,
)
from sparse_attention_hub.errors import ConfigError


class WhitespaceTokenizer:
    """A slow-path tokenizer (no fast backend): one token per whitespace-separated word."""

    name_or_path = "whitespace"

    def __init__(self, vocab: dict[str, int] | None = None) -> None:
        self.vocab = vocab or {"a": 0}

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        extra = [[0]] if add_special_tokens else [[]]
        return {"input_ids": [extra[0] + t.split() for t in texts]}

    def get_vocab(self) -> dict[str, int]:
        return self.vocab


@given(
    fixed=st.integers(0, 400),
    per_unit=st.integers(1, 30),
    budget=st.integers(450, 5000),
    increment=st.integers(1, 50),
)
def test_largest_fitting_finds_the_exact_answer_for_linear_costs(
    fixed: int, per_unit: int, budget: int, increment: int
) -> None:
    expected = (budget - fixed) // per_unit
    if expected < 1:
        with pytest.raises(ConfigError, match="cannot hold"):
            largest_fitting(lambda n: fixed + per_unit * n, budget, increment)
        return
    # a large fixed part makes the probe's linear estimate far too small: the bound must grow
    assert largest_fitting(lambda n: fixed + per_unit * n, budget, increment) == expected


def test_largest_fitting_respects_min_and_max_size() -> None:
    assert largest_fitting(lambda n: n, 1000, 10, max_size=300) == 300
    with pytest.raises(ConfigError):
        largest_fitting(lambda n: 5 * n, 40, 10, min_size=11)


def test_largest_fitting_measures_few_sizes() -> None:
    calls: list[int] = []

    def measure(n: int) -> int:
        calls.append(n)
        return 100 + 3 * n

    assert largest_fitting(measure, 100_000, 500) == 33_300
    assert len(calls) < 30


def test_fit_samples_brings_every_sample_to_its_own_largest_fitting_size() -> None:
    # sample i costs offsets[i] + 7 n tokens; the probe's size fits some and not others
    offsets = [0, 40, 90, 3, 65]
    budget, slope = 1000, 7.0

    def render(i: int, n: int) -> str:
        return "x " * (offsets[i] + 7 * n)

    batches: list[int] = []

    def count(texts: list[str]) -> list[int]:
        batches.append(len(texts))
        return [len(t.split()) for t in texts]

    sizes, counts = fit_samples(render, count, 135, 5, budget, slope)
    assert sizes == [(budget - o) // 7 for o in offsets]
    assert counts == [o + 7 * n for o, n in zip(offsets, sizes, strict=True)]
    assert all(c <= budget for c in counts)
    assert len(batches) <= 8  # one batch per round, not one call per sample


def test_fit_samples_bisects_when_the_slope_is_underestimated() -> None:
    # the real cost is 10 tokens per unit but the caller believes 4: growth overshoots and must
    # fall back to bisection instead of giving up far below the budget
    sizes, counts = fit_samples(
        lambda i, n: "x " * (10 * n), lambda t: [len(x.split()) for x in t], 10, 1, 1000, 4.0
    )
    assert all(c <= 1000 for c in counts)
    assert sizes[0] >= 97  # the best is 100


def test_fit_samples_raises_when_nothing_fits() -> None:
    with pytest.raises(ConfigError, match="cannot fit"):
        fit_samples(
            lambda i, n: "x " * (500 + n), lambda t: [len(x.split()) for x in t], 5, 1, 100, 1.0
        )


def test_count_tokens_without_a_fast_backend_and_without_special_tokens() -> None:
    assert count_tokens(WhitespaceTokenizer(), ["a b c", "", "d"]) == [3, 0, 1]


def test_count_tokens_uses_the_fast_backend(chat_tokenizer: Any) -> None:
    texts = ["The grass is green.", "One of the special magic numbers for x is: 1234567."]
    expected = [len(chat_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert count_tokens(chat_tokenizer, texts) == expected


def test_tokenizer_fingerprint_tracks_the_vocabulary() -> None:
    one = tokenizer_fingerprint(WhitespaceTokenizer({"a": 0}))
    assert one == tokenizer_fingerprint(WhitespaceTokenizer({"a": 0}))
    assert one["name"] == "whitespace"
    assert (
        one["vocab_sha256"] != tokenizer_fingerprint(WhitespaceTokenizer({"b": 0}))["vocab_sha256"]
    )
