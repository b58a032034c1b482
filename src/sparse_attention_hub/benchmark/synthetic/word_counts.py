"""Aggregation tasks: common words (`cwe`) and frequent coded words (`fwe`), RULER rules."""

from __future__ import annotations

import math
import random
import string

from scipy.special import zeta

from sparse_attention_hub.benchmark.synthetic.prompt import Prompt, Setting

CWE_COMMON = 10
FWE_ALPHA = 2.0
FWE_WORD_LENGTH = 6
FWE_MAX_NEW_TOKENS = 50


def cwe_repeats(length: int) -> tuple[tuple[int, int, int], tuple[int, int]]:
    """((example words, common, uncommon repeats) of the example, (common, uncommon) of the sample)."""
    if length < 4096:
        return (20, 3, 1), (6, 1)
    return (40, 10, 3), (30, 3)


def cwe_example_words(length: int) -> int:
    return cwe_repeats(length)[0][0]


def cwe_prompt(rng: random.Random, words: list[str], common: int, uncommon: int) -> Prompt:
    """The first 10 `words` repeated `common` times, the rest `uncommon` times, shuffled."""
    entries = [w for w in words[:CWE_COMMON] for _ in range(common)]
    entries += [w for w in words[CWE_COMMON:] for _ in range(uncommon)]
    rng.shuffle(entries)
    listing = " ".join(f"{i}. {word}" for i, word in enumerate(entries, 1))
    return Prompt(
        context=(
            "Below is a numbered list of words. In these words, some appear more often than "
            f"others. Memorize the ones that appear most often.\n{listing}\n"
        ),
        question="Question: What are the 10 most common words in the above list?",
        answer_prefix="Answer: The top 10 words that appear most often in the list are:",
        answers=words[:CWE_COMMON],
    )


def build_cwe(rng: random.Random, n: int, setting: Setting) -> Prompt:
    """A solved few-shot example, then a list of `n` distinct words (10 of them common)."""
    (example_n, ex_common, ex_uncommon), (common, uncommon) = cwe_repeats(setting.length)
    words = rng.sample(setting.resources.cwe_words, example_n + n)
    example = cwe_prompt(rng, words[:example_n], ex_common, ex_uncommon)
    solved = " ".join(f"{i}. {word}" for i, word in enumerate(example.answers, 1))
    sample = cwe_prompt(rng, words[example_n:], common, uncommon)
    return Prompt(
        f"{example.sized_text()} {solved}\n{sample.context}",
        sample.question,
        sample.answer_prefix,
        sample.answers,
    )


def fwe_vocab_size(setting: Setting) -> int:
    return (setting.length - FWE_MAX_NEW_TOKENS - setting.template_overhead) // 50


def build_fwe(rng: random.Random, n: int, setting: Setting) -> Prompt:
    """~`n` coded words with Zipf(2) frequencies; rank 1 is the noise `...`, ranks 2-4 answer."""
    size = fwe_vocab_size(setting)
    vocab: list[str] = []
    seen: set[str] = set()
    while len(vocab) < size:
        word = "".join(rng.choices(string.ascii_lowercase, k=FWE_WORD_LENGTH))
        if word not in seen:
            seen.add(word)
            vocab.append(word)
    rng.shuffle(vocab)
    vocab[0] = "..."
    norm = float(zeta(FWE_ALPHA))
    words = [w for k, w in enumerate(vocab, 1) for _ in range(math.floor(n * k**-FWE_ALPHA / norm))]
    rng.shuffle(words)
    return Prompt(
        context=(
            "Read the following coded text and track the frequency of each coded word. Find the "
            f"three most frequently appeared coded words. {' '.join(words)}\n"
        ),
        question=(
            "Question: Do not provide any explanation. Please ignore the dots '....'. What are "
            "the three most frequently appeared words in the above coded text?"
        ),
        answer_prefix=(
            "Answer: According to the coded text above, the three most frequently appeared words are:"
        ),
        answers=vocab[1:4],
    )
