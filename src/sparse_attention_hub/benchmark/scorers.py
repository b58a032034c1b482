"""Scoring primitives shared by every benchmark (specs/benchmarks.md §0.7). Implement once here."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
_CONTROL = re.compile(r"[\x00-\x1f]")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (SQuAD / LongBench)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_f1(prediction: Sequence[str], ground_truth: Sequence[str]) -> float:
    """F1 of the multiset overlap of two token lists; 0 when nothing overlaps."""
    common = Counter(prediction) & Counter(ground_truth)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction)
    recall = overlap / len(ground_truth)
    return 2 * precision * recall / (precision + recall)


def qa_f1(prediction: str, ground_truth: str) -> float:
    return token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def ruler_postprocess(prediction: str) -> str:
    """RULER's clean-up: strip, control characters -> newline, strip again."""
    return _CONTROL.sub("\n", prediction.strip()).strip()


def string_match_all(prediction: str, references: Sequence[str]) -> float:
    """Fraction of references found (case-insensitively) in the prediction (RULER)."""
    if not references:
        return 0.0
    lowered = prediction.lower()
    return sum(ref.lower() in lowered for ref in references) / len(references)


def string_match_part(prediction: str, references: Sequence[str]) -> float:
    """1 if any reference occurs (case-insensitively) in the prediction (RULER QA tasks)."""
    lowered = prediction.lower()
    return float(any(ref.lower() in lowered for ref in references))
