"""ZeroSCROLLS validation metrics, as the `metrics/` folder of the `tau/zero_scrolls` dataset
repository computes them (docs/benchmarks.md §6; our own code, checked against it).

F1 normalises SQuAD-style and then transliterates to ASCII; SpaceDigest reads the first
`<digits>[.<digits>]%`; the summarisation score is the geometric mean of the corpus-level
ROUGE-1, ROUGE-2 and ROUGE-L F-measures (Google's `rouge-score`, no stemming), each sample
taking its best reference per ROUGE type.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any

from unidecode import unidecode

from sparse_attention_hub.benchmark.scorers import normalize_answer, token_f1

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
ROUGE_USE_STEMMER = False
"""The official wrapper passes `use_stemmer=False` to its ROUGE function."""
_PERCENTAGE = re.compile(r"\d+\.?\d*%")


def scrolls_tokens(text: str) -> list[str]:
    """Tokens for ZeroSCROLLS F1: `normalize_answer` (lower-case, ASCII punctuation and the
    articles a/an/the dropped, whitespace collapsed), then `unidecode` to ASCII, then split.

    The transliteration comes last, as in the official code, so a curly quote survives the
    punctuation step and becomes an ASCII quote inside its token.
    """
    return unidecode(normalize_answer(text)).split()


def scrolls_f1(prediction: str, references: Sequence[str]) -> float:
    """Unigram F1 on `scrolls_tokens`, max over the references (0 when there are none)."""
    predicted = scrolls_tokens(prediction)
    return max((token_f1(predicted, scrolls_tokens(ref)) for ref in references), default=0.0)


def first_percentage(text: str) -> float | None:
    """The first `\\d+\\.?\\d*%` in `text` as a number of percent (`"32.%"` -> 32.0), or None.

    A space before `%` or a leading `.` (`".5%"`) does not match, as in the official regex.
    """
    match = _PERCENTAGE.search(text)
    return float(match.group(0)[:-1]) if match else None


def exponential_similarity(prediction: str, gold: str) -> float:
    """SpaceDigest: 0.5 ** (|p - g| / 10) with p, g in percent; no percentage predicted -> 0.

    A gold answer without a percentage counts as 0 %, as in the official code.
    """
    predicted = first_percentage(prediction)
    if predicted is None:
        return 0.0
    expected = first_percentage(gold)
    return float(0.5 ** (abs((expected or 0.0) - predicted) / 10.0))


@functools.cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=ROUGE_USE_STEMMER)


def rouge_fmeasures(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F-measure of one prediction, each the max over its references (0 if none)."""
    best = dict.fromkeys(ROUGE_TYPES, 0.0)
    for reference in references:
        scores = _rouge_scorer().score(reference, prediction)
        for key in ROUGE_TYPES:
            best[key] = max(best[key], float(scores[key].fmeasure))
    return best


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of non-negative values as the product's root (the official formula)."""
    return float(math.prod(values) ** (1.0 / len(values)))


def corpus_rouge(per_sample: Sequence[dict[str, float]]) -> dict[str, float | None]:
    """Corpus ROUGE on 0-100: the mean of each type over the samples, and their geometric mean
    (`geometric_mean`, the task score). None everywhere when there are no samples."""
    if not per_sample:
        return {**dict.fromkeys(ROUGE_TYPES), "geometric_mean": None}
    means = {k: 100.0 * sum(s[k] for s in per_sample) / len(per_sample) for k in ROUGE_TYPES}
    return {**means, "geometric_mean": geometric_mean(list(means.values()))}
