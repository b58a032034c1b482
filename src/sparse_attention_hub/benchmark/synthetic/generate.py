"""Rows of one (task, target length): seeded per sample, sized with the model's tokenizer."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from sparse_attention_hub.benchmark.synthetic.prompt import Setting
from sparse_attention_hub.benchmark.synthetic.sizing import (
    count_tokens,
    fit_samples,
    largest_fitting,
)
from sparse_attention_hub.benchmark.synthetic.tasks import TASKS, TaskSpec
from sparse_attention_hub.errors import ConfigError

logger = logging.getLogger(__name__)

# Bump when any builder, template or sizing rule changes: it is part of the cache key.
GENERATOR_VERSION = "2"


def sample_rng(seed: int | str, task: str, length: int, index: int | str) -> random.Random:
    """The sample's own RNG; a str seed is hashed stably across processes (never `hash()`)."""
    return random.Random(f"{seed}:{task}:{length}:{index}")


def generate_rows(
    task: str,
    length: int,
    num_samples: int,
    *,
    seed: int | str,
    tokenizer: Any,
    template_overhead: int = 0,
) -> list[dict[str, Any]]:
    """`num_samples` rows of `task` whose prompts fill `length` tokens (minus cap and overhead).

    The haystack size is searched once with a probe RNG; each sample is then built with its own
    RNG from that size, shrunk if it overshoots and grown while it still fits. A sample depends
    only on its own RNG and the probe, so a smaller `num_samples` reproduces a prefix exactly.
    """
    spec = TASKS[task]
    budget = length - spec.max_new_tokens - template_overhead
    if budget <= 0:
        raise ConfigError(
            f"context length {length} leaves no room for {task} "
            f"(max_new_tokens {spec.max_new_tokens}, template_overhead {template_overhead})"
        )

    def count(texts: list[str]) -> list[int]:
        return count_tokens(tokenizer, texts)

    setting = Setting(length=length, template_overhead=template_overhead)
    if spec.prepare is not None:
        setting = spec.prepare(
            setting,
            lambda text: count([text])[0],
            lambda: sample_rng(seed, task, length, "example"),
        )

    def render(index: int | str, n: int) -> str:
        return spec.build(sample_rng(seed, task, length, index), n, setting).sized_text()

    best, sizes, lengths = size_samples(spec, setting, render, count, budget, num_samples)
    rows = []
    for index, (size, realised) in enumerate(zip(sizes, lengths, strict=True)):
        prompt = spec.build(sample_rng(seed, task, length, index), size, setting)
        rows.append(
            {
                "sample_id": f"{task}:{length}:{index}",
                "context": prompt.context,
                "question": prompt.question,
                "answer_prefix": prompt.answer_prefix,
                "answers": list(prompt.answers),
                "task": task,
                "max_new_tokens": spec.max_new_tokens,
                "context_length": length,
                "length": realised,
                "seed": seed,
            }
        )
    logger.info(
        "generated %d %s samples at %d tokens (haystack size %d)", num_samples, task, length, best
    )
    return rows


def size_samples(
    spec: TaskSpec,
    setting: Setting,
    render: Callable[[int | str, int], str],
    count: Callable[[list[str]], list[int]],
    budget: int,
    num_samples: int,
) -> tuple[int, list[int], list[int]]:
    """(the probe's haystack size, each sample's size, each sample's length in tokens).

    The probe sample (`render("probe", n)`) finds the largest size that fits `budget`; its
    tokens per unit of size guide each sample's own fit (`sizing.fit_samples`).
    """
    best = largest_fitting(
        lambda n: count([render("probe", n)])[0],
        budget,
        spec.increment(setting.length),
        spec.min_size,
        spec.max_size(setting),
    )
    half = max(spec.min_size, best // 2)
    top, bottom = count([render("probe", best), render("probe", half)])
    slope = (top - bottom) / (best - half) if best > half else top / best
    sizes, lengths = fit_samples(
        render,
        count,
        best,
        num_samples,
        budget,
        max(slope, 1e-3),
        spec.min_size,
        spec.max_size(setting),
    )
    return best, sizes, lengths
