"""AIME 2024 and AIME 2025: 30 competition problems each, the answer an integer 0-999.

Both years share loading and scoring (docs/benchmarks.md §7): the final answer is found as
Qwen2.5-Math's `extract_answer` finds it (last box, then "answer is", then the Chinese cue, then the
last number) and counts only if it is a plain number equal to the gold integer
(`_math_answer.extract_integer_answer`), so `033`, `33.0` and `\\dfrac{33}{1}` all equal 33 while a
boxed expression is wrong. One small class per year, on a shared base that holds the functions below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.benchmark._math_answer import answer_text, integer_value
from sparse_attention_hub.benchmark.averages import mean_percent
from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.loading import load_table, normalise_rows
from sparse_attention_hub.benchmark.registry import register_benchmark

HUB_2024 = "xAlg-AI/att-hub-aime2024"
HUB_2025 = "xAlg-AI/att-hub-aime2025"


def load_aime(hub_id: str, subset: str, data_path: Path | None) -> pd.DataFrame:
    """Rows of one year; the hub's `answer` (str in 2024, one-element list in 2025) -> list[str]."""
    frame = load_table(hub_id, None, "test", data_path, [subset, "test"])
    return normalise_rows(frame, subset, task=subset)


def gold_integer(answers: list[str]) -> int | None:
    """The gold answer as an int (`"033"` -> 33); None when it is not an integer."""
    try:
        return int(str(answers[0]).strip())
    except (IndexError, ValueError):
        return None


def score_aime(rows: pd.DataFrame) -> pd.DataFrame:
    """Per sample: the `answer_text` chosen, the `rule` that chose it, its `extracted` integer,
    `boxed`, `correct`, `score`."""
    records = []
    for prediction, answers in zip(rows["prediction"], rows["answers"], strict=True):
        text, rule = answer_text(str(prediction))
        value = integer_value(text)
        gold = gold_integer(list(answers))
        if gold is None:
            raise ValueError(f"AIME gold answer {answers!r} is not an integer")
        correct = value is not None and value == gold
        records.append(
            {
                "answer_text": text,
                "extracted": value,
                "rule": rule,
                "boxed": rule == "boxed",
                "correct": correct,
                "score": float(correct),
            }
        )
    frame = pd.DataFrame.from_records(records, index=rows.index)
    frame["extracted"] = frame["extracted"].astype("Int64")
    return frame


class _Aime(Benchmark):
    """What both years share: loading from `hub_id`, scoring, the per-task counts and rates."""

    def load_subset(self, subset: str) -> pd.DataFrame:
        return load_aime(self.hub_id or "", subset, self.data_path)

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        return score_aime(rows)

    def task_metrics(self, task: str, rows: pd.DataFrame) -> dict[str, Any]:
        """Accuracy, extraction and box rates (all 0-100) and counts; overall = accuracy."""
        return {
            **super().task_metrics(task, rows),
            "n_correct": int(rows["correct"].sum()),
            "extraction_rate": mean_percent(rows["extracted"].notna().astype(float)),
            "boxed_rate": mean_percent(rows["boxed"].astype(float)),
        }

    def subset_metrics(self) -> dict[str, str]:
        return dict.fromkeys(self.all_datasets, "accuracy (integer answer)")


@register_benchmark("aime2024")
class Aime2024(_Aime):
    """AIME 2024 (from `Maxwell-Jia/AIME_2024`); local copy: `<data_path>/aime2024.jsonl`."""

    benchmark_name = "aime2024"
    all_datasets: ClassVar[list[str]] = ["aime2024"]
    hub_id = HUB_2024


@register_benchmark("aime2025")
class Aime2025(_Aime):
    """AIME 2025 (from `yentinglin/aime_2025`); local copy: `<data_path>/aime2025.jsonl`."""

    benchmark_name = "aime2025"
    all_datasets: ClassVar[list[str]] = ["aime2025"]
    hub_id = HUB_2025
