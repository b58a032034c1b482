"""What a generator returns, and the placement helpers the haystacks share."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sparse_attention_hub.benchmark.synthetic.resources import Resources, load_resources


@dataclass(frozen=True)
class Prompt:
    """One generated sample: the texts the model sees and the ground-truth answers."""

    context: str
    question: str
    answer_prefix: str
    answers: list[str]

    def sized_text(self) -> str:
        """The text whose token count is the sample's length (RULER's input + answer prefix)."""
        return f"{self.context}{self.question} {self.answer_prefix}"


@dataclass(frozen=True)
class Setting:
    """What a builder needs besides its RNG and haystack size.

    `length` is the target in tokens, `example_size` the haystack size of a one-shot example
    (used by `vt`, fitted to about 500 tokens once per tokenizer).
    """

    length: int
    template_overhead: int = 0
    example_size: int = 0
    resources: Resources = field(default_factory=load_resources)


def insert_at_random(rng: random.Random, base: list[str], items: list[str]) -> list[str]:
    """`base` with `items` placed at distinct random slots, `items` keeping their given order."""
    total = len(base) + len(items)
    slots = set(rng.sample(range(total), len(items)))
    base_iter, item_iter = iter(base), iter(items)
    return [next(item_iter) if i in slots else next(base_iter) for i in range(total)]


def join_keys(keys: list[str]) -> str:
    """`"a"`, `"a, and b"`, `"a, b, and c"`: RULER's query phrasing."""
    if len(keys) == 1:
        return keys[0]
    return ", ".join(keys[:-1]) + ", and " + keys[-1]
