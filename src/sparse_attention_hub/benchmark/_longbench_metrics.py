"""LongBench's per-sample metrics (docs/benchmarks.md §1), each `(prediction, ground_truth,
all_classes) -> float in [0, 1]`.

These reproduce the official `metrics.py` of THUDM/LongBench, quirks included, because published
LongBench numbers are defined by that code. The generic primitives live in `scorers.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from sparse_attention_hub.benchmark.scorers import (
    fuzz_ratio,
    qa_f1,
    qa_f1_zh,
    rouge_l,
    rouge_l_zh,
)

Metric = Callable[[str, str, Sequence[str]], float]

_INTEGER = re.compile(r"\d+")
_PARAGRAPH_EN = re.compile(r"Paragraph (\d+)")
_PARAGRAPH_ZH = re.compile(r"段落(\d+)")


def classification_score(prediction: str, ground_truth: str, all_classes: Sequence[str]) -> float:
    """1/len(matched) if the true class is among the class names found in the prediction.

    Class names that are substrings of the true class (e.g. "LOC" inside "LOC:city") are dropped
    from `matched`, with the official loop that removes from the list it iterates: the element
    after a removed one is never examined. That skip changes scores, so it is kept on purpose.
    A row without class names cannot be scored (it would silently be 0): that raises.
    """
    if not all_classes:
        raise ValueError("classification needs the task's all_classes; this row has none")
    matched = [name for name in all_classes if name in prediction]
    for term in matched:  # mutating while iterating reproduces the official skip
        if term in ground_truth and term != ground_truth:
            matched.remove(term)
    return 1.0 / len(matched) if ground_truth in matched else 0.0


def _fraction_equal(prediction: str, target: str) -> float:
    """Share of the integers in `prediction` that equal `target`; 0 when it has none."""
    numbers = _INTEGER.findall(prediction)
    if not numbers:
        return 0.0
    return sum(number == target for number in numbers) / len(numbers)


def _paragraph_id(pattern: re.Pattern[str], ground_truth: str) -> str:
    match = pattern.search(ground_truth)
    if match is None:
        raise ValueError(f"ground truth {ground_truth!r} has no paragraph id ({pattern.pattern})")
    return match.group(1)


def retrieval_score(prediction: str, ground_truth: str, all_classes: Sequence[str]) -> float:
    """Fraction of the integers in the prediction equal to N of "Paragraph N"."""
    return _fraction_equal(prediction, _paragraph_id(_PARAGRAPH_EN, ground_truth))


def retrieval_zh_score(prediction: str, ground_truth: str, all_classes: Sequence[str]) -> float:
    """`retrieval_score` with the Chinese label "段落N"."""
    return _fraction_equal(prediction, _paragraph_id(_PARAGRAPH_ZH, ground_truth))


def count_score(prediction: str, ground_truth: str, all_classes: Sequence[str]) -> float:
    """Fraction of the integers in the prediction equal to the true count."""
    return _fraction_equal(prediction, ground_truth)


def code_sim_score(prediction: str, ground_truth: str, all_classes: Sequence[str]) -> float:
    """fuzz ratio / 100 between the true line and the first predicted line that is not a comment
    or markdown (no `` ` ``, `#` or `//`); an all-comment prediction compares the empty string."""
    lines = prediction.lstrip("\n").split("\n")
    code = next((ln for ln in lines if "`" not in ln and "#" not in ln and "//" not in ln), "")
    return fuzz_ratio(code, ground_truth) / 100.0


def _ignore_classes(fn: Callable[[str, str], float]) -> Metric:
    def metric(prediction: str, ground_truth: str, all_classes: Sequence[str]) -> float:
        return fn(prediction, ground_truth)

    metric.__name__ = fn.__name__
    return metric


METRICS: dict[str, Metric] = {
    "qa_f1": _ignore_classes(qa_f1),
    "qa_f1_zh": _ignore_classes(qa_f1_zh),
    "rouge_l": _ignore_classes(rouge_l),
    "rouge_l_zh": _ignore_classes(rouge_l_zh),
    "classification": classification_score,
    "retrieval": retrieval_score,
    "retrieval_zh": retrieval_zh_score,
    "count": count_score,
    "code_sim": code_sim_score,
}
