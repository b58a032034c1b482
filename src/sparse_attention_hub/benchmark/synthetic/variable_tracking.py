"""Variable tracking (`vt`): one chain of 4 hops hidden in noise (RULER `variable_tracking.py`).

The prompt opens with a one-shot example of the same construction (3-letter names, ~500 tokens),
kept inside `context`, so the question and answer prefix belong to the real sample only.
"""

from __future__ import annotations

import dataclasses
import random
import string
from collections.abc import Callable

from sparse_attention_hub.benchmark.synthetic.prompt import Prompt, Setting, insert_at_random
from sparse_attention_hub.benchmark.synthetic.resources import NOISE_SENTENCE
from sparse_attention_hub.benchmark.synthetic.sizing import largest_fitting

NUM_HOPS = 4
EXAMPLE_TOKENS = 500  # target size of the one-shot example


def variable_names(rng: random.Random, count: int, length: int) -> list[str]:
    """`count` distinct names of `length` random upper-case letters."""
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choices(string.ascii_uppercase, k=length))
        if name not in names:
            names.append(name)
    return names


def chain_prompt(rng: random.Random, n: int, name_length: int) -> Prompt:
    """`n` noise lines with the chain `X0 = value`, `X1 = X0`, ... inserted in order."""
    names = variable_names(rng, NUM_HOPS + 1, name_length)
    value = rng.randint(10_000, 99_999)
    chain = [f"VAR {names[0]} = {value}"]
    chain += [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(NUM_HOPS)]
    haystack = "\n".join(insert_at_random(rng, [NOISE_SENTENCE] * n, chain)).replace(". \n", ".\n")
    return Prompt(
        context=(
            "Memorize and track the chain(s) of variable assignment hidden in the following "
            f"text.\n\n{haystack}\n"
        ),
        question=f"Question: Find all variables that are assigned the value {value} in the text above.",
        answer_prefix=(
            "Answer: According to the chain(s) of variable assignment in the text above, "
            f"{NUM_HOPS + 1} variables are assigned the value {value}, they are: "
        ),
        answers=names,
    )


def render_example(rng: random.Random, n: int) -> str:
    """A solved example: context + question + prefix + the five names, ending in a newline."""
    example = chain_prompt(rng, n, name_length=3)
    return f"{example.sized_text()} {' '.join(example.answers)}\n"


def fit_example(
    setting: Setting, tokens: Callable[[str], int], example_rng: Callable[[], random.Random]
) -> Setting:
    """`setting` with `example_size`: the largest example of at most `EXAMPLE_TOKENS` tokens,
    each candidate drawn from a fresh `example_rng()` (so the size depends on the tokenizer only)."""
    size = largest_fitting(
        lambda n: tokens(render_example(example_rng(), n)), EXAMPLE_TOKENS, increment=5
    )
    return dataclasses.replace(setting, example_size=size)


def build_vt(rng: random.Random, n: int, setting: Setting) -> Prompt:
    """One `vt` sample: the example (`setting.example_size` lines), then `n` noise lines."""
    example = render_example(rng, setting.example_size)
    sample = chain_prompt(rng, n, name_length=5)
    return Prompt(example + sample.context, sample.question, sample.answer_prefix, sample.answers)
