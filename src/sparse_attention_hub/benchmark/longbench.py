"""LongBench (Bai et al., 2024): 21 bilingual long-context tasks plus 13 length-balanced `_e` ones.

Scoring follows the official `eval.py` / `metrics.py` (docs/benchmarks.md §1): per sample the
max over ground truths of the task's metric; standard tasks are macro-averaged into `overall`
and per-category means; `_e` tasks are reported only by length bucket (0-4k, 4-8k, 8k+).
"""

from __future__ import annotations

import io
import logging
import math
import zipfile
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.benchmark import loading
from sparse_attention_hub.benchmark._longbench_metrics import METRICS
from sparse_attention_hub.benchmark._longbench_prompts import CHINESE_PROMPTS, build_rows
from sparse_attention_hub.benchmark.averages import mean_of, mean_percent
from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.registry import register_benchmark
from sparse_attention_hub.benchmark.scorers import scorer_backends
from sparse_attention_hub.errors import DatasetLoadError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskInfo:
    category: str
    metric: str
    official_max_new_tokens: int


TASKS: dict[str, TaskInfo] = {
    "narrativeqa": TaskInfo("Single-Doc QA", "qa_f1", 128),
    "qasper": TaskInfo("Single-Doc QA", "qa_f1", 128),
    "multifieldqa_en": TaskInfo("Single-Doc QA", "qa_f1", 64),
    "multifieldqa_zh": TaskInfo("Single-Doc QA", "qa_f1_zh", 64),
    "hotpotqa": TaskInfo("Multi-Doc QA", "qa_f1", 32),
    "2wikimqa": TaskInfo("Multi-Doc QA", "qa_f1", 32),
    "musique": TaskInfo("Multi-Doc QA", "qa_f1", 32),
    "dureader": TaskInfo("Multi-Doc QA", "rouge_l_zh", 128),
    "gov_report": TaskInfo("Summarization", "rouge_l", 512),
    "qmsum": TaskInfo("Summarization", "rouge_l", 512),
    "multi_news": TaskInfo("Summarization", "rouge_l", 512),
    "vcsum": TaskInfo("Summarization", "rouge_l_zh", 512),
    "trec": TaskInfo("Few-shot", "classification", 64),
    "triviaqa": TaskInfo("Few-shot", "qa_f1", 32),
    "samsum": TaskInfo("Few-shot", "rouge_l", 128),
    "lsht": TaskInfo("Few-shot", "classification", 64),
    "passage_count": TaskInfo("Synthetic", "count", 32),
    "passage_retrieval_en": TaskInfo("Synthetic", "retrieval", 32),
    "passage_retrieval_zh": TaskInfo("Synthetic", "retrieval_zh", 32),
    "lcc": TaskInfo("Code", "code_sim", 64),
    "repobench-p": TaskInfo("Code", "code_sim", 64),
}
EXTENDED = [
    f"{t}_e"
    for t in (
        "qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "gov_report", "multi_news", "trec",
        "triviaqa", "samsum", "passage_count", "passage_retrieval_en", "lcc", "repobench-p",
    )
]  # fmt: skip
CATEGORIES = ["Single-Doc QA", "Multi-Doc QA", "Summarization", "Few-shot", "Synthetic", "Code"]
FIRST_LINE_TASKS = {"trec", "triviaqa", "samsum", "lsht"}
LENGTH_BUCKETS = (("0-4k", 0, 4000), ("4-8k", 4000, 8000), ("8k+", 8000, None))
EXTRA_TOKENS = 20  # generation headroom over the official caps, as in the hub rows


def base_task(task: str) -> str:
    """`qasper_e` -> `qasper`: an extended task uses its base task's prompt, metric and cap."""
    return task.removesuffix("_e")


def length_bucket(length: int) -> str:
    """The LongBench-E bucket of a sample length (words, or characters for Chinese)."""
    for name, low, high in LENGTH_BUCKETS:
        if length >= low and (high is None or length < high):
            return name
    raise ValueError(f"length must be >= 0, got {length}")


def _class_list(value: Any) -> list[str] | None:
    """`all_classes` as `list[str]`, or None for tasks without classes (null / NaN cells)."""
    value = loading.to_python(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return loading.as_str_list(value)


def score_sample(task: str, prediction: str, answers: list[str], all_classes: list[str]) -> float:
    """Official per-sample score: max over ground truths of the task's metric (0 if none)."""
    base = base_task(task)
    metric = METRICS[TASKS[base].metric]
    if base in FIRST_LINE_TASKS:
        prediction = prediction.lstrip("\n").split("\n")[0]
    return max((metric(prediction, gt, all_classes) for gt in answers), default=0.0)


@register_benchmark("longbench")
class LongBench(Benchmark):
    """All 34 LongBench / LongBench-E subsets; the 5 Chinese tasks are built from THUDM rows."""

    benchmark_name = "longbench"
    all_datasets: ClassVar[list[str]] = [*TASKS, *EXTENDED]
    hub_id = "Xnhyacinth/LongBench"
    original_hub_id = "THUDM/LongBench"
    original_archive = "data.zip"

    def original_records(self, task: str) -> pd.DataFrame:
        """THUDM/LongBench records of one task: the local copy, else `data/{task}.jsonl` of the
        hub's `data.zip`.

        That hub repository is a loading-script dataset, which `datasets` >= 4 refuses to run,
        so its archive (the files the script itself read) is downloaded and read directly.
        """
        if self.data_path is not None:
            return loading.load_table(self.original_hub_id, task, "test", self.data_path, [task])
        member = f"data/{task}.jsonl"
        try:
            import huggingface_hub

            archive = huggingface_hub.hf_hub_download(
                self.original_hub_id, self.original_archive, repo_type="dataset"
            )
            with zipfile.ZipFile(archive) as bundle, bundle.open(member) as handle:
                return pd.read_json(
                    io.TextIOWrapper(handle, encoding="utf-8"), lines=True, dtype=False
                )
        except Exception as exc:  # network, a missing member, a torn archive: one load error
            raise DatasetLoadError(
                f"could not load {task!r} from {member} in {self.original_hub_id!r}/"
                f"{self.original_archive}: {type(exc).__name__}: {exc}. "
                "Pass a local copy with data_path=..."
            ) from exc

    def load_subset(self, subset: str) -> pd.DataFrame:
        if subset in CHINESE_PROMPTS:
            frame = self.original_records(subset)
            if "input" in frame.columns and "question" not in frame.columns:
                cap = TASKS[subset].official_max_new_tokens + EXTRA_TOKENS
                frame = build_rows(frame, subset, cap)
        else:
            frame = self.read_table(subset)
        rows = loading.normalise_rows(frame, subset, task=subset)
        classes = rows["all_classes"] if "all_classes" in rows.columns else [None] * len(rows)
        rows["all_classes"] = [_class_list(v) for v in classes]
        rows["length"] = [int(v) for v in rows["length"]]
        return rows

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        if base_task(task) not in TASKS:
            raise ValueError(
                f"unknown LongBench task {task!r}; known: {', '.join(self.all_datasets)}"
            )
        scores = [
            score_sample(
                task, str(pred), loading.as_str_list(answers), loading.as_str_list(classes)
            )
            for pred, answers, classes in zip(
                rows["prediction"], rows["answers"], rows["all_classes"], strict=True
            )
        ]
        return pd.DataFrame(
            {"score": scores, "length_bucket": [length_bucket(int(n)) for n in rows["length"]]},
            index=rows.index,
        )

    def aggregate(self, scored: pd.DataFrame) -> dict[str, Any]:
        """Standard tasks -> `tasks`, `overall`, `categories`; `_e` tasks -> length buckets."""
        standard = scored["task"].astype(str).isin(list(TASKS))
        metrics = super().aggregate(scored[standard])
        tasks = metrics["tasks"].values()
        metrics["categories"] = {
            category: mean_of([t["score"] for t in tasks if t["category"] == category])
            for category in CATEGORIES
        }
        metrics["buckets"] = length_buckets(scored[~standard])
        return metrics

    def task_metrics(self, task: str, rows: pd.DataFrame) -> dict[str, Any]:
        """A standard task's score, with its category and metric."""
        return {
            **super().task_metrics(task, rows),
            "category": TASKS[task].category,
            "metric": TASKS[task].metric,
        }

    def subset_metrics(self) -> dict[str, str]:
        return {
            subset: TASKS[base_task(subset)].metric
            + (" by length" if subset != base_task(subset) else "")
            for subset in self.all_datasets
        }

    def options(self) -> dict[str, Any]:
        return {**super().options(), "scorers": scorer_backends()}


def length_buckets(extended: pd.DataFrame) -> dict[str, Any]:
    """LongBench-E: each `_e` task's score per length bucket (and counts), their mean per bucket;
    {} when no `_e` task ran."""
    scores: dict[str, dict[str, float | None]] = {}
    counts: dict[str, dict[str, int]] = {}
    for task, rows in extended.groupby("task", sort=False):
        name = str(task)
        scores[name], counts[name] = {}, {}
        for bucket, _, _ in LENGTH_BUCKETS:
            in_bucket = rows.loc[rows["length_bucket"] == bucket, "score"]
            scores[name][bucket] = mean_percent(in_bucket)
            counts[name][bucket] = int(in_bucket.notna().sum())
    if not scores:
        return {}
    means = {
        bucket: mean_of([cells[bucket] for cells in scores.values()])
        for bucket, _, _ in LENGTH_BUCKETS
    }
    return {"extended": scores, "extended_n": counts, "extended_mean": means}
