"""Generation options, next-token choice, EOS union and stop strings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sparse_attention_hub.adapters.generation import (
    GenerationOptions,
    TokenChooser,
    cut_at_stop,
    eos_token_ids,
    question_seed,
)


def test_defaults_are_greedy() -> None:
    options = GenerationOptions.from_kwargs({})
    assert options.do_sample is False and options.max_new_tokens == 32 and options.stops == ()


def test_unknown_kwarg_lists_the_supported_ones() -> None:
    with pytest.raises(ValueError, match="num_beams") as error:
        GenerationOptions.from_kwargs({"max_new_tokens": 4, "num_beams": 2})
    for name in ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "seed", "stop"):
        assert name in str(error.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_new_tokens": 0}, {"temperature": 0.0}, {"top_p": 1.5}, {"top_k": -1}, {"stop": [""]}],
)
def test_invalid_values_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GenerationOptions.from_kwargs(kwargs)


def test_stop_and_stop_strings_merge() -> None:
    options = GenerationOptions.from_kwargs({"stop": "\n", "stop_strings": ["END", "Q:"]})
    assert options.stops == ("\n", "END", "Q:")


def test_greedy_is_argmax() -> None:
    choose = TokenChooser(GenerationOptions(), "q")
    assert choose(torch.tensor([0.1, 3.0, -2.0, 2.9])) == 1


def draws(options: GenerationOptions, question_id: str, n: int = 20) -> list[int]:
    choose = TokenChooser(options, question_id)
    return [choose(torch.zeros(1000)) for _ in range(n)]


def test_sampling_is_seeded_per_question() -> None:
    options = GenerationOptions(do_sample=True, seed=7)
    assert draws(options, "sample-1") == draws(options, "sample-1")
    assert draws(options, "sample-1") != draws(options, "sample-2")
    assert draws(options, "sample-1") != draws(
        GenerationOptions(do_sample=True, seed=8), "sample-1"
    )


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    logits = torch.randn(500, generator=torch.Generator().manual_seed(0))
    best = int(logits.argmax())
    for options in (
        GenerationOptions(do_sample=True, top_k=1),
        GenerationOptions(do_sample=True, top_p=1e-6),
    ):
        choose = TokenChooser(options, "q")
        assert {choose(logits) for _ in range(30)} == {best}


def test_top_k_limits_the_draws() -> None:
    logits = torch.arange(100, dtype=torch.float32) / 10
    choose = TokenChooser(GenerationOptions(do_sample=True, top_k=3, temperature=5.0), "q")
    assert {choose(logits) for _ in range(200)} == {97, 98, 99}


def test_question_seed_is_stable() -> None:
    assert question_seed(0, "a") == question_seed(0, "a")
    assert question_seed(0, "a") != question_seed(0, "b")
    assert 0 <= question_seed(123, "x") < 2**63


@pytest.mark.parametrize(
    ("configured", "expected"),
    [(2, {2, 9}), ([2, 3], {2, 3, 9}), (None, {9}), (9, {9})],
)
def test_eos_is_the_union(configured: int | list[int] | None, expected: set[int]) -> None:
    config = SimpleNamespace(eos_token_id=configured)
    assert eos_token_ids(config, SimpleNamespace(eos_token_id=9)) == expected


def test_cut_at_the_earliest_stop() -> None:
    assert cut_at_stop("an answer\nQ: next END", ["END", "\n"]) == ("an answer", True)
    assert cut_at_stop("no stop here", ["END"]) == ("no stop here", False)
    assert cut_at_stop("text", []) == ("text", False)
