"""Token counting and the search for the largest haystack that fits a target length."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.hashing import json_sha256

logger = logging.getLogger(__name__)

GROW_ROUNDS = 8


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Token counts without special tokens, batch-encoded by the fast backend when there is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [len(e.ids) for e in backend.encode_batch(list(texts), add_special_tokens=False)]
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, str]:
    """Name and vocabulary hash: two tokenizers that split text differently never share a cache."""
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    get_vocab = getattr(tokenizer, "get_vocab", None)
    vocab = get_vocab() if callable(get_vocab) else {}
    # the spelling existing fingerprints were made with: default spacing, non-ASCII kept
    vocab_sha256 = json_sha256(sorted(vocab.items()), compact=False, ascii_only=False)
    return {"name": name, "vocab_sha256": vocab_sha256}


def largest_fitting(
    measure: Callable[[int], int],
    budget: int,
    increment: int,
    min_size: int = 1,
    max_size: int | None = None,
) -> int:
    """Largest `n` in [min_size, max_size] with `measure(n) <= budget`, by binary search.

    RULER's bounds: a probe at one increment gives tokens per unit and the upper bound is 3x the
    linear estimate; when a fixed part (instructions, examples) makes that estimate too small, the
    upper bound doubles until it no longer fits. `measure` should be (nearly) non-decreasing.
    """
    cap = max_size if max_size is not None else 1 << 40
    probe = min(max(increment, min_size), cap)
    per_unit = max(measure(probe) / probe, 1e-9)
    low, high, best = min_size, min(max(int(budget / per_unit * 3), 2 * probe), cap), None
    while high < cap and measure(high) <= budget:
        best, low, high = high, high + 1, min(2 * high, cap)
    while low <= high:
        mid = (low + high) // 2
        if measure(mid) <= budget:
            best, low = mid, mid + 1
        else:
            high = mid - 1
    if best is None:
        raise ConfigError(
            f"a budget of {budget} tokens cannot hold even the smallest sample "
            f"(size {min_size}); use a larger context length"
        )
    if best == max_size:
        logger.warning("haystack size capped at %d; samples will be shorter than the target", best)
    return best


def fit_samples(
    render: Callable[[int, int], str],
    count: Callable[[list[str]], list[int]],
    start: int,
    num_samples: int,
    budget: int,
    slope: float,
    min_size: int = 1,
    max_size: int | None = None,
) -> tuple[list[int], list[int]]:
    """Per-sample haystack sizes and token counts, each as close to `budget` as it can get.

    Every sample starts at the probe's size `start`. One that overshoots by t tokens shrinks by
    ceil(t / slope) units (at least one) until it fits. Then, for a few rounds, a sample with at
    least one unit of room grows by floor(room / slope), never past halfway to the smallest size
    already seen to overshoot (a bisection once an overshoot is known). Samples that need
    re-measuring are encoded together, one batch per round.
    """
    sizes = [start] * num_samples
    counts = count([render(i, start) for i in range(num_samples)])
    too_big: dict[int, int] = {}  # sample -> smallest size seen to overshoot
    over = [i for i, c in enumerate(counts) if c > budget]
    while over:
        for i in over:
            too_big[i] = sizes[i]
            sizes[i] -= max(1, math.ceil((counts[i] - budget) / slope))
            if sizes[i] < min_size:
                raise ConfigError(f"sample {i} cannot fit {budget} tokens at any haystack size")
        for i, c in zip(over, count([render(i, sizes[i]) for i in over]), strict=True):
            counts[i] = c
        over = [i for i in over if counts[i] > budget]
    active: list[int] = list(range(num_samples))
    for _ in range(GROW_ROUNDS):
        trial: dict[int, int] = {}
        for i in active:
            size = sizes[i] + math.floor((budget - counts[i]) / slope)
            if i in too_big:
                size = min(size, (sizes[i] + too_big[i]) // 2)
            if max_size is not None:
                size = min(size, max_size)
            if size > sizes[i]:
                trial[i] = size
        if not trial:
            break
        measured = count([render(i, n) for i, n in trial.items()])
        for (i, size), c in zip(trial.items(), measured, strict=True):
            if c <= budget:
                sizes[i], counts[i] = size, c
            else:
                too_big[i] = min(size, too_big.get(i, size))
        active = sorted(trial)
    return sizes, counts
