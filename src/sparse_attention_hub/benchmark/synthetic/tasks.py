"""The 11 generated tasks: builder, token cap and sizing steps of each."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

from sparse_attention_hub.benchmark.synthetic.niah import NIAH_TASKS, build_niah
from sparse_attention_hub.benchmark.synthetic.prompt import Prompt, Setting
from sparse_attention_hub.benchmark.synthetic.variable_tracking import build_vt, fit_example
from sparse_attention_hub.benchmark.synthetic.word_counts import (
    FWE_MAX_NEW_TOKENS,
    build_cwe,
    build_fwe,
    cwe_example_words,
)

Builder = Callable[[random.Random, int, Setting], Prompt]
Prepare = Callable[[Setting, Callable[[str], int], Callable[[], random.Random]], Setting]
"""`prepare(setting, tokens_of_text, example_rng) -> setting`: fits what a task's samples share."""


@dataclass(frozen=True)
class TaskSpec:
    """How to build one task and how its haystack size `n` is searched.

    `increment(length)` is RULER's step (probe size, and the floor of the search); `min_size` the
    smallest meaningful `n`; `max_size(setting)` a hard cap (the `cwe` word pool), or None.
    `prepare` fills in the `Setting` once before the haystack is sized (`vt` fits its one-shot
    example there), or None.
    """

    name: str
    max_new_tokens: int
    build: Builder
    increment: Callable[[int], int]
    min_size: int = 1
    max_size: Callable[[Setting], int | None] = lambda setting: None
    prepare: Prepare | None = None


def _lines(length: int) -> int:
    return 5 if length < 4096 else 25


def _cwe_cap(setting: Setting) -> int:
    return len(setting.resources.cwe_words) - cwe_example_words(setting.length)


def _niah(name: str) -> TaskSpec:
    config = NIAH_TASKS[name]
    increment = (lambda length: 500) if config.haystack == "essay" else _lines
    return TaskSpec(name, 128, functools.partial(build_niah, config), increment)


TASKS: dict[str, TaskSpec] = {name: _niah(name) for name in NIAH_TASKS}
TASKS["vt"] = TaskSpec("vt", 30, build_vt, _lines, prepare=fit_example)
TASKS["cwe"] = TaskSpec("cwe", 120, build_cwe, lambda length: 10, min_size=11, max_size=_cwe_cap)
TASKS["fwe"] = TaskSpec(
    "fwe", FWE_MAX_NEW_TOKENS, build_fwe, lambda length: max(1, length // 32), min_size=100
)
