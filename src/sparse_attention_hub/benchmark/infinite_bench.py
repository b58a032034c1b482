"""InfiniteBench (Zhang et al., 2024): nine 100k+-token tasks, retrieval to book QA.

Rows come from `MaxJeblick/InfiniteBench` (official open-model prompts, docs/benchmarks.md §3).
Labels are converted at load to the types the official scorers expect (int return values,
int/float numbers, `[option text, letter]` for choice tasks), never parsed with eval.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.benchmark import loading
from sparse_attention_hub.benchmark._infinite_bench_scorers import LENIENT, SCORERS
from sparse_attention_hub.benchmark.averages import mean_percent
from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.registry import register_benchmark

CHOICE_TASKS = ("code_debug", "longbook_choice_eng")
_INTEGER = re.compile(r"^-?\d+$")


def option_text(question: str, letter: str) -> str:
    """The text of option `letter`, exactly as on the question's last `"<letter>. ..."` line.

    The options were appended to the question as its last lines, so they are searched from the
    end (the question itself may quote an `"A. ..."` line); the text is kept as is, since the
    official label is the option string itself.
    """
    for line in reversed(question.split("\n")):
        if line.startswith(f"{letter}. "):
            return line[len(letter) + 2 :]
    raise ValueError(f"question has no line starting with {letter + '. '!r}")


def normalise_label(task: str, answers: list[str], question: str) -> Any:
    """The label in the type the task's scorer compares against."""
    if not answers:
        raise ValueError(f"{task}: a row has no answer")
    if task == "code_run":
        return int(answers[0])
    if task == "math_find":
        value = answers[0].strip()
        return int(value) if _INTEGER.match(value) else float(value)
    if task in CHOICE_TASKS:
        letter = answers[0].strip()
        return [option_text(question, letter), letter]
    return list(answers)


@register_benchmark("infinite_bench")
class InfiniteBench(Benchmark):
    """The nine English InfiniteBench tasks; choice/dialogue tasks also report `score_lenient`."""

    benchmark_name = "infinite_bench"
    all_datasets: ClassVar[list[str]] = list(SCORERS)
    hub_id = "MaxJeblick/InfiniteBench"

    def load_subset(self, subset: str) -> pd.DataFrame:
        frame = self.read_table(subset)
        rows = loading.normalise_rows(frame, subset, task=subset)
        labels = [
            normalise_label(subset, answers, question)
            for answers, question in zip(rows["answers"], rows["question"], strict=True)
        ]
        rows["label"] = pd.Series(labels, index=rows.index, dtype=object)
        return rows

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        if task not in SCORERS:
            raise ValueError(f"unknown InfiniteBench task {task!r}; known: {', '.join(SCORERS)}")
        scorer = SCORERS[task]
        predictions = [str(p) for p in rows["prediction"]]
        # Rebuilt from answers + question (not read from `label`), so re-scoring a saved
        # raw_results.csv, where `label` is text, gives the same numbers.
        labels = [
            normalise_label(task, loading.as_str_list(answers), str(question))
            for answers, question in zip(rows["answers"], rows["question"], strict=True)
        ]
        scores = [float(scorer(p, label)) for p, label in zip(predictions, labels, strict=True)]
        columns: dict[str, list[float]] = {"score": scores}
        if task in LENIENT:
            lenient = LENIENT[task]
            columns["score_lenient"] = [
                float(lenient(p, label)) for p, label in zip(predictions, labels, strict=True)
            ]
        return pd.DataFrame(columns, index=rows.index)

    def task_metrics(self, task: str, rows: pd.DataFrame) -> dict[str, Any]:
        entry = super().task_metrics(task, rows)
        if task in LENIENT:
            entry["score_lenient"] = mean_percent(rows["score_lenient"])
        return entry

    def subset_metrics(self) -> dict[str, str]:
        return {
            task: "qa_f1" if task == "longbook_qa_eng" else "accuracy" for task in self.all_datasets
        }
