"""LongBench-v2 (Bai et al., 2025): 503 four-choice questions over long documents.

Two subsets ask the same questions over identical contexts: `0shot` (answer directly) and `cot`
(think step by step first). Scoring follows the official `extract_answer` (specs/benchmarks.md
§2): an answer counts only in the form "The correct answer is (X)"; accuracy is reported overall
and by difficulty (easy / hard) and length (short / medium / long).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.benchmark import loading
from sparse_attention_hub.benchmark.base import Benchmark, mean_of, mean_percent
from sparse_attention_hub.benchmark.registry import register_benchmark

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

    def load_subset(self, subset: str) -> pd.DataFrame:
        frame = loading.load_table(self.hub_id or "", subset, "test", self.data_path, [subset])
        if "choice_A" in frame.columns and "answer_prefix" not in frame.columns:
            frame = build_rows(frame, subset)
        rows = loading.normalise_rows(frame, subset, task=subset)
        if "answer" not in rows.columns:
            rows["answer"] = [answers[0] if answers else "" for answers in rows["answers"]]
        rows["answer"] = rows["answer"].astype(str).str.strip()
        return rows

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        extracted = [extract_choice(str(p)) for p in rows["prediction"]]
        scores = [
            float(x is not None and x == str(a).strip())
            for x, a in zip(extracted, rows["answer"], strict=True)
        ]
        return pd.DataFrame({"score": scores, "extracted": extracted}, index=rows.index)

    def aggregate(self, scored: pd.DataFrame) -> dict[str, Any]:
        tasks: dict[str, dict[str, Any]] = {}
        difficulty: dict[str, dict[str, float | None]] = {}
        length: dict[str, dict[str, float | None]] = {}
        for task, rows in scored.groupby("task", sort=False):
            name = str(task)
            entry: dict[str, Any] = {
                "score": mean_percent(rows["score"]),
                "n_scored": int(rows["score"].notna().sum()),
            }
            for column, values, table in (
                ("difficulty", DIFFICULTIES, difficulty),
                ("length", LENGTHS, length),
            ):
                table[name] = {}
                for value in values:
                    cell = rows.loc[rows[column].astype(str) == value, "score"]
                    entry[value] = table[name][value] = mean_percent(cell)
                    entry[f"n_{value}"] = int(cell.notna().sum())
            tasks[name] = entry
        return {
            "benchmark": self.benchmark_name,
            "overall": mean_of([t["score"] for t in tasks.values()]),
            "tasks": tasks,
            "buckets": {"difficulty": difficulty, "length": length},
        }

    def subset_metrics(self) -> dict[str, str]:
        return {subset: "accuracy" for subset in self.all_datasets}
