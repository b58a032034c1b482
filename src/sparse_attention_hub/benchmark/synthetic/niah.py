"""Needle-in-a-haystack builders (RULER `niah.py` rules, our own code).

A needle is `"One of the special magic {numbers|uuids} for {key} is: {value}."`; the haystack is
repeated noise sentences, filler essay words, or distractor needles.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Literal

from sparse_attention_hub.benchmark.synthetic.prompt import (
    Prompt,
    Setting,
    insert_at_random,
    join_keys,
)
from sparse_attention_hub.benchmark.synthetic.resources import (
    NOISE_SENTENCE,
    Resources,
    cycled,
    split_sentences,
)

Haystack = Literal["noise", "essay", "needle"]
ItemKind = Literal["words", "numbers", "uuids"]

DEPTHS: tuple[float, ...] = tuple(i * 100 / 39 for i in range(40))
"""40 evenly spaced insertion depths in percent, 0 to 100 inclusive (not rounded to integers)."""


def depth_position(num_sentences: int, depth_index: int) -> int:
    """⌊num_sentences × DEPTHS[depth_index] / 100⌋, computed exactly in integers."""
    return num_sentences * depth_index // (len(DEPTHS) - 1)


@dataclass(frozen=True)
class NiahConfig:
    """One NIAH task: haystack type, key/value kinds, k keys, v values per key, q queried keys."""

    haystack: Haystack
    key_kind: ItemKind
    value_kind: ItemKind
    num_keys: int = 1
    num_values: int = 1
    num_queries: int = 1


NIAH_TASKS: dict[str, NiahConfig] = {
    "niah_single_1": NiahConfig("noise", "words", "numbers"),
    "niah_single_2": NiahConfig("essay", "words", "numbers"),
    "niah_single_3": NiahConfig("essay", "words", "uuids"),
    "niah_multikey_1": NiahConfig("essay", "words", "numbers", num_keys=4),
    "niah_multikey_2": NiahConfig("needle", "words", "numbers"),
    "niah_multikey_3": NiahConfig("needle", "uuids", "uuids"),
    "niah_multivalue": NiahConfig("essay", "words", "numbers", num_values=4),
    "niah_multiquery": NiahConfig("essay", "words", "numbers", num_keys=4, num_queries=4),
}


def random_item(rng: random.Random, kind: ItemKind, resources: Resources) -> str:
    if kind == "words":
        return f"{rng.choice(resources.adjectives)}-{rng.choice(resources.nouns)}"
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def distinct_items(
    rng: random.Random, kind: ItemKind, count: int, resources: Resources, exclude: set[str]
) -> list[str]:
    """`count` distinct random items none of which is in `exclude`."""
    items: list[str] = []
    while len(items) < count:
        item = random_item(rng, kind, resources)
        if item not in exclude and item not in items:
            items.append(item)
    return items


def needle(value_kind: ItemKind, key: str, value: str) -> str:
    return f"One of the special magic {value_kind} for {key} is: {value}."


def essay_haystack(rng: random.Random, n: int, needles: list[str], resources: Resources) -> str:
    """`n` filler words; needles go between sentences at distinct depths out of 40."""
    sentences = split_sentences(" ".join(cycled(resources.essay_words, n)))
    depths = sorted(rng.sample(range(len(DEPTHS)), len(needles)))
    positions = [depth_position(len(sentences), depth) for depth in depths]
    parts: list[str] = []
    start = 0
    for position, text in zip(positions, needles, strict=True):
        parts.extend(sentences[start:position])
        parts.append(text)
        start = position
    parts.extend(sentences[start:])
    return " ".join(parts)


def build_niah(config: NiahConfig, rng: random.Random, n: int, setting: Setting) -> Prompt:
    """One NIAH sample with a haystack of size `n` (lines, words or distractor needles)."""
    resources = setting.resources
    num_keys = max(config.num_keys, config.num_queries)
    keys = distinct_items(rng, config.key_kind, num_keys, resources, set())
    flat_values = distinct_items(
        rng, config.value_kind, num_keys * config.num_values, resources, set()
    )
    values = {
        key: flat_values[i * config.num_values : (i + 1) * config.num_values]
        for i, key in enumerate(keys)
    }
    needles = [needle(config.value_kind, key, value) for key in keys for value in values[key]]
    rng.shuffle(needles)

    if config.haystack == "essay":
        haystack = essay_haystack(rng, n, needles, resources)
    elif config.haystack == "noise":
        haystack = "\n".join(insert_at_random(rng, [NOISE_SENTENCE] * n, needles))
    else:
        used = set(keys)
        distractors = [
            needle(
                config.value_kind,
                distinct_items(rng, config.key_kind, 1, resources, used)[0],
                random_item(rng, config.value_kind, resources),
            )
            for _ in range(n)
        ]
        haystack = "\n".join(insert_at_random(rng, distractors, needles))

    queried = rng.sample(keys, config.num_queries)
    query = join_keys(queried)
    answers = [value for key in queried for value in values[key]]
    plural = config.value_kind  # "numbers" | "uuids"
    if config.num_queries * config.num_values == 1:
        single = plural.removesuffix("s")
        context = (
            f"A special magic {single} is hidden within the following text. Make sure to "
            f"memorize it. I will quiz you about the {single} afterwards.\n{haystack}\n"
        )
        question = f"What is the special magic {single} for {query} mentioned in the provided text?"
        prefix = f"The special magic {single} for {query} mentioned in the provided text is"
    else:
        context = (
            f"Some special magic {plural} are hidden within the following text. Make sure to "
            f"memorize it. I will quiz you about the {plural} afterwards.\n{haystack}\n"
        )
        question = (
            f"What are all the special magic {plural} for {query} mentioned in the provided text?"
        )
        prefix = f"The special magic {plural} for {query} mentioned in the provided text are"
    return Prompt(context, question, prefix, answers)
