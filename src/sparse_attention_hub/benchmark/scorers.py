"""Scoring primitives shared by every benchmark (specs/benchmarks.md §0.7). Implement once here."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sparse_attention_hub.benchmark.base import mean_of, mean_percent

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


def ruler_sample_score(task: str, prediction: str, references: Sequence[str]) -> float:
    """One RULER sample in [0, 1]: `string_match_part` for `qa_*` tasks, else `string_match_all`.

    The prediction is post-processed on a copy (`ruler_postprocess`); saved text is untouched.
    """
    cleaned = ruler_postprocess(prediction)
    if task.startswith("qa_"):
        return string_match_part(cleaned, references)
    return string_match_all(cleaned, references)


def ruler_aggregate(scored: pd.DataFrame, benchmark_name: str) -> dict[str, Any]:
    """RULER metrics (specs/benchmarks.md §5) from per-sample scores, all on 0-100.

    `scored` needs columns `task`, `context_length` (target length) and `score` (in [0, 1]).
    Cells: `buckets.by_length[L][task]` = 100 x mean, `buckets.by_length_n[L][task]` = samples,
    `buckets.length_mean[L]` = mean over the tasks of length L, `tasks[task].score` = mean of that
    task's per-length scores, `overall` = mean of `length_mean` over the lengths run. Length keys
    are strings (JSON keys); empty cells are None, never a division by zero.
    """
    by_length: dict[str, dict[str, float | None]] = {}
    by_length_n: dict[str, dict[str, int]] = {}
    per_task: dict[str, list[float | None]] = {}
    n_task: dict[str, int] = {}
    if not scored.empty:
        lengths = sorted({int(v) for v in scored["context_length"]})
        for length in lengths:
            rows_l = scored[scored["context_length"].astype(int) == length]
            key = str(length)
            by_length[key], by_length_n[key] = {}, {}
            for task, rows in rows_l.groupby("task", sort=False):
                name = str(task)
                score = mean_percent(rows["score"])
                count = int(rows["score"].notna().sum())
                by_length[key][name] = score
                by_length_n[key][name] = count
                per_task.setdefault(name, []).append(score)
                n_task[name] = n_task.get(name, 0) + count
    length_mean = {key: mean_of(list(cells.values())) for key, cells in by_length.items()}
    tasks = {
        name: {"score": mean_of(scores), "n_scored": n_task[name]}
        for name, scores in per_task.items()
    }
    return {
        "benchmark": benchmark_name,
        "scale": "0-100",
        "overall": mean_of(list(length_mean.values())),
        "tasks": tasks,
        "buckets": {"by_length": by_length, "by_length_n": by_length_n, "length_mean": length_mean},
    }
