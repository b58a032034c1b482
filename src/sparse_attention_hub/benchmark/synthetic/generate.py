"""Rows of one (task, target length): seeded per sample, sized with the model's tokenizer."""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any

from sparse_attention_hub.benchmark.synthetic.prompt import Setting
from sparse_attention_hub.benchmark.synthetic.sizing import (
    count_tokens,
    fit_samples,
    largest_fitting,
)
from sparse_attention_hub.benchmark.synthetic.tasks import TASKS
from sparse_attention_hub.benchmark.synthetic.variable_tracking import (
    EXAMPLE_TOKENS,
    render_example,
)
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
    if task == "vt":

        def example_tokens(n: int) -> int:
            return count([render_example(sample_rng(seed, task, length, "example"), n)])[0]

        size = largest_fitting(example_tokens, EXAMPLE_TOKENS, increment=5)
        setting = dataclasses.replace(setting, example_size=size)

    def render(index: int | str, n: int) -> str:
        return spec.build(sample_rng(seed, task, length, index), n, setting).sized_text()

    best = largest_fitting(
        lambda n: count([render("probe", n)])[0],
        budget,
        spec.increment(length),
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
