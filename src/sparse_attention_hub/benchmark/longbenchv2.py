"""LongBench-v2 (Bai et al., 2025): 503 four-choice questions over long documents.

Two subsets ask the same questions over identical contexts: `0shot` (answer directly) and `cot`
(think step by step first). Scoring follows the official `extract_answer` (docs/benchmarks.md §2):
an answer counts only in the form "The correct answer is (X)"; accuracy is reported overall and by
difficulty (easy / hard) and length (short / medium / long).

Empty outputs: by default an empty answer is a wrong answer. The official `pred.py` instead drops
a sample whose output is `''` (it never reaches the results file); `empty_answers="drop"` does the
same here. Either way metrics.json counts them in `n_empty`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.benchmark import loading
from sparse_attention_hub.benchmark.averages import mean_percent
from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.registry import register_benchmark
from sparse_attention_hub.errors import ConfigError

_BOXED = re.compile(r"The correct answer is \(([A-D])\)")
_PLAIN = re.compile(r"The correct answer is ([A-D])")

CONTEXT_TEMPLATE = "Please read the following text and answer the question below.\n\n<text>\n{context}\n</text>\n\n"
QUESTION_TEMPLATE = (
    "What is the correct answer to this question: {question}\n"
    "Choices:\n(A) {A}\n(B) {B}\n(C) {C}\n(D) {D}\n\n"
)
FORMAT_LINE = 'Format your response as follows: "The correct answer is (insert answer here)".'
# The hub rows' prefixes: cot asks for the final format too, as it is answered in one call.
ANSWER_PREFIXES = {"0shot": FORMAT_LINE, "cot": FORMAT_LINE + "\n\nLet’s think step by step:"}
MAX_NEW_TOKENS = {"0shot": 128 + 20, "cot": 1024 + 20}
DIFFICULTIES = ("easy", "hard")
LENGTHS = ("short", "medium", "long")
BUCKETS = (("difficulty", DIFFICULTIES), ("length", LENGTHS))  # (row column, its values)
EMPTY_ANSWERS = ("wrong", "drop")
"""`wrong`: an empty output scores 0 (ours); `drop`: it is left out, as the official `pred.py`."""


def extract_choice(response: str) -> str | None:
    """The letter of "The correct answer is (X)" (or "... is X"), `*` removed; None if absent."""
    response = response.replace("*", "")
    match = _BOXED.search(response) or _PLAIN.search(response)
    return match.group(1) if match else None


def build_rows(records: pd.DataFrame, subset: str) -> pd.DataFrame:
    """Original THUDM/LongBench-v2 records (`question`, `choice_A`..`choice_D`) -> hub rows.

    Document, question and choices are stripped before filling the templates, as the hub rows
    were built, so a local copy of the originals gives the same prompts as the hub.
    """
    rows = records.copy()
    rows["context"] = [CONTEXT_TEMPLATE.format(context=c.strip()) for c in records["context"]]
    rows["question"] = [
        QUESTION_TEMPLATE.format(
            question=q.strip(), A=a.strip(), B=b.strip(), C=c.strip(), D=d.strip()
        )
        for q, a, b, c, d in zip(
            records["question"],
            records["choice_A"],
            records["choice_B"],
            records["choice_C"],
            records["choice_D"],
            strict=True,
        )
    ]
    rows["answer_prefix"] = ANSWER_PREFIXES[subset]
    rows["max_new_tokens"] = MAX_NEW_TOKENS[subset]
    return rows


@register_benchmark("longbenchv2")
class LongBenchV2(Benchmark):
    """`0shot` and `cot`; `overall` is the mean of the two subset accuracies."""

    benchmark_name = "longbenchv2"
    all_datasets: ClassVar[list[str]] = ["0shot", "cot"]
    hub_id = "Xnhyacinth/LongBench-v2"

    def __init__(
        self,
        subsets_to_run: Sequence[str] | None = None,
        data_path: str | Path | None = None,
        *,
        empty_answers: str = "wrong",
    ) -> None:
        if empty_answers not in EMPTY_ANSWERS:
            raise ConfigError(
                f"longbenchv2 empty_answers {empty_answers!r} is not one of "
                f"{', '.join(EMPTY_ANSWERS)}"
            )
        super().__init__(subsets_to_run, data_path)
        self.empty_answers = empty_answers

    def options(self) -> dict[str, Any]:
        return {**super().options(), "empty_answers": self.empty_answers}

    def load_subset(self, subset: str) -> pd.DataFrame:
        frame = self.read_table(subset)
        if "choice_A" in frame.columns and "answer_prefix" not in frame.columns:
            frame = build_rows(frame, subset)
        rows = loading.normalise_rows(frame, subset, task=subset)
        if "answer" not in rows.columns:
            rows["answer"] = [answers[0] if answers else "" for answers in rows["answers"]]
        rows["answer"] = rows["answer"].astype(str).str.strip()
        return rows

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        predictions = [str(p) for p in rows["prediction"]]
        extracted = [extract_choice(p) for p in predictions]
        empty = [p == "" for p in predictions]  # the official test: output == ''
        scores = [
            float("nan")
            if is_empty and self.empty_answers == "drop"
            else float(x == str(a).strip())
            for x, a, is_empty in zip(extracted, rows["answer"], empty, strict=True)
        ]
        return pd.DataFrame(
            {"score": scores, "extracted": extracted, "empty": empty}, index=rows.index
        )

    def task_metrics(self, task: str, rows: pd.DataFrame) -> dict[str, Any]:
        """Accuracy overall and per difficulty / length value (with counts); empty answers."""
        entry = super().task_metrics(task, rows)
        entry["n_empty"] = int(rows["empty"].astype(bool).sum()) if "empty" in rows else 0
        entry["empty_answers"] = self.empty_answers
        for column, values in BUCKETS:
            for value in values:
                cell = rows.loc[rows[column].astype(str) == value, "score"]
                entry[value] = mean_percent(cell)
                entry[f"n_{value}"] = int(cell.notna().sum())
        return entry

    def aggregate(self, scored: pd.DataFrame) -> dict[str, Any]:
        """The default, plus `buckets`: each task's accuracy per difficulty and per length."""
        metrics = super().aggregate(scored)
        metrics["buckets"] = {
            column: {
                name: {value: entry[value] for value in values}
                for name, entry in metrics["tasks"].items()
            }
            for column, values in BUCKETS
        }
        return metrics

    def subset_metrics(self) -> dict[str, str]:
        return {subset: "accuracy" for subset in self.all_datasets}
