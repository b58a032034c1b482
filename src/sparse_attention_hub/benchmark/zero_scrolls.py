"""ZeroSCROLLS (Shaham et al., 2023): ten zero-shot tasks over long texts.

Test gold answers are private (leaderboard only). With `split="test"` (default) nothing is scored:
each task reports its size and mean response length with `"scored": false`, and the job writes a
leaderboard file per task, `leaderboard_<task>.json` = `{id: prediction}`, next to metrics.json.
`split="validation"` (about 20 rows per task, gold in `output`) is scored as the official metric
code of the `tau/zero_scrolls` repository scores it (docs/benchmarks.md §6).

Local copy (`data_path`): a directory holding `<task>.jsonl` per task or one `default.jsonl` (or
`<split>.jsonl`) with every task in a `task` column; rows in the hub schema (`context`, `question`,
`answer_prefix`, ...) or in the raw `tau/zero_scrolls` schema (`id`, `input`, `output`, the
`document_end_index` / `query_end_index` offsets), which is split into context, question and
answer prefix here exactly as the hub dataset was built. Validation rows sharing an `id` are one
sample with several references.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.benchmark._zero_scrolls_metrics import (
    ROUGE_TYPES,
    corpus_rouge,
    exponential_similarity,
    geometric_mean,
    rouge_fmeasures,
    scrolls_f1,
)
from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.loading import load_table, normalise_rows
from sparse_attention_hub.benchmark.registry import register_benchmark
from sparse_attention_hub.errors import ConfigError, DatasetLoadError
from sparse_attention_hub.result_files import leaderboard_file

HUB_ID = "simonjegou/zero_scrolls"
VALIDATION_HUB_ID = "tau/zero_scrolls"
SPLITS = ("test", "validation")
MAX_NEW_TOKENS = {
    "gov_report": 1024,
    "summ_screen_fd": 512,
    "qmsum": 512,
    "squality": 512,
    "qasper": 128,
    "narrative_qa": 64,
    "quality": 10,
    "musique": 32,
    "space_digest": 36,
    "book_sum_sort": 256,
}
METRICS = {
    **dict.fromkeys(("gov_report", "summ_screen_fd", "qmsum", "squality"), "rouge_geometric_mean"),
    **dict.fromkeys(("qasper", "narrative_qa", "musique"), "f1"),
    "quality": "accuracy",
    "space_digest": "exponential_similarity",
    "book_sum_sort": "concordance_index",
}
_OPTION_LETTER = re.compile(r"\b([A-D])\b")


def option_letter(text: str) -> str | None:
    """The first standalone letter A-D (QuALITY's answer), or None."""
    match = _OPTION_LETTER.search(text)
    return match.group(1) if match else None


def summary_order(text: str) -> list[int]:
    """BookSumSort order: integers after keeping only digits, commas and whitespace."""
    kept = re.sub(r"[^\d,\s]", "", text)
    return [int(token) for token in re.split(r"[,\s]+", kept) if token]


def concordance_index(prediction: str, gold: str) -> float:
    """Fraction of the C(n, 2) pairs of the gold order that the prediction keeps in order.

    A prediction that is not a permutation of the gold items scores 0.
    """
    predicted, expected = summary_order(prediction), summary_order(gold)
    if sorted(predicted) != sorted(expected) or len(set(expected)) != len(expected):
        return 0.0
    position = {item: index for index, item in enumerate(predicted)}
    pairs = list(itertools.combinations(expected, 2))
    if not pairs:
        return 1.0
    return sum(position[a] < position[b] for a, b in pairs) / len(pairs)


def score_sample(task: str, prediction: str, references: Sequence[str]) -> float:
    """One validation sample in [0, 1] with its task's metric (max over references).

    For the ROUGE tasks this is the sample's own geometric mean, for inspection only: the task
    score is the geometric mean of the corpus means (`_zero_scrolls_metrics.corpus_rouge`).
    """
    metric = METRICS[task]
    if metric == "rouge_geometric_mean":
        return geometric_mean(list(rouge_fmeasures(prediction, references).values()))
    if metric == "f1":
        return scrolls_f1(prediction, references)
    if metric == "accuracy":
        letter = option_letter(prediction)
        return float(letter is not None and any(letter == option_letter(r) for r in references))
    if metric == "exponential_similarity":
        return max((exponential_similarity(prediction, r) for r in references), default=0.0)
    return max((concordance_index(prediction, r) for r in references), default=0.0)


def split_source_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Raw `tau/zero_scrolls` rows -> context / question / answer_prefix by the stored offsets."""
    texts = [str(t) for t in frame["input"]]
    doc_end = [int(v) for v in frame["document_end_index"]]
    query_end = [int(v) for v in frame["query_end_index"]]
    return frame.assign(
        context=[t[:d] for t, d in zip(texts, doc_end, strict=True)],
        question=[t[d:q] for t, d, q in zip(texts, doc_end, query_end, strict=True)],
        answer_prefix=[t[q:].strip() for t, q in zip(texts, query_end, strict=True)],
    )


def merge_references(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per `id`, its `answers` = every `output` given for that id, in order."""
    references: dict[str, list[str]] = {}
    for sample_id, output in zip(frame["id"], frame["output"], strict=True):
        gold = references.setdefault(str(sample_id), [])
        if isinstance(output, str) and output.strip():  # a null output is no reference
            gold.append(output)
    first = frame.drop_duplicates("id", keep="first").drop(columns=["answer"], errors="ignore")
    return first.assign(answers=[references[str(i)] for i in first["id"]])


@register_benchmark("zero_scrolls")
class ZeroScrolls(Benchmark):
    """ZeroSCROLLS; `split` = "test" (leaderboard files, no score) or "validation" (scored)."""

    benchmark_name = "zero_scrolls"
    all_datasets: ClassVar[list[str]] = list(MAX_NEW_TOKENS)
    hub_id = HUB_ID

    def __init__(
        self,
        subsets_to_run: Sequence[str] | None = None,
        data_path: str | Path | None = None,
        *,
        split: str = "test",
    ) -> None:
        if split not in SPLITS:
            raise ConfigError(f"zero_scrolls split {split!r} is not one of {', '.join(SPLITS)}")
        super().__init__(subsets_to_run, data_path)
        self.split = split
        self._hub_test_table: pd.DataFrame | None = None

    def options(self) -> dict[str, Any]:
        return {**super().options(), "split": self.split}

    def subset_metrics(self) -> dict[str, str]:
        if self.split == "test":
            return dict.fromkeys(
                self.all_datasets, "none (test answers are private; leaderboard file)"
            )
        return dict(METRICS)

    # ----- loading -------------------------------------------------------------------------
    def _table(self, subset: str) -> pd.DataFrame:
        if self.data_path is not None:  # `default` is the hub's test config: test only
            names = [subset, "default", "test"] if self.split == "test" else [subset, "validation"]
            return load_table(HUB_ID, None, self.split, self.data_path, names)
        if self.split == "validation":
            return load_table(VALIDATION_HUB_ID, subset, "validation", None, [])
        if self._hub_test_table is None:  # one config holds all ten tasks: load it once
            self._hub_test_table = load_table(HUB_ID, "default", "test", None, [])
        return self._hub_test_table

    def load_subset(self, subset: str) -> pd.DataFrame:
        frame = self._table(subset)
        if "task" in frame.columns:
            frame = frame[frame["task"] == subset]
        if frame.empty:
            raise DatasetLoadError(f"zero_scrolls ({self.split}) has no rows of task {subset!r}")
        if "context" not in frame.columns:
            frame = split_source_rows(frame)
        if self.split == "validation" and "output" in frame.columns:
            frame = merge_references(frame)
        if "max_new_tokens" not in frame.columns:
            frame = frame.assign(max_new_tokens=MAX_NEW_TOKENS[subset])
        rows = normalise_rows(frame, subset)
        no_gold = sum(not any(a.strip() for a in answers) for answers in rows["answers"])
        if self.split == "validation" and no_gold:  # else they would silently score 0
            raise DatasetLoadError(
                f"zero_scrolls validation task {subset!r}: {no_gold} of {len(rows)} rows have no "
                "gold answer (`output`); test-split rows cannot be scored"
            )
        return rows

    # ----- scoring -------------------------------------------------------------------------
    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        predictions = [str(p) for p in rows["prediction"]]
        chars = [len(p) for p in predictions]
        if self.split == "test":
            return pd.DataFrame(
                {"response_chars": chars, "score": [None] * len(rows)}, index=rows.index
            )
        frame = pd.DataFrame({"response_chars": chars}, index=rows.index)
        references = [list(answers) for answers in rows["answers"]]
        if METRICS[task] == "rouge_geometric_mean":
            best = [
                rouge_fmeasures(p, refs) for p, refs in zip(predictions, references, strict=True)
            ]
            for key in ROUGE_TYPES:
                frame[key] = [sample[key] for sample in best]
            frame["score"] = [geometric_mean([sample[k] for k in ROUGE_TYPES]) for sample in best]
            return frame
        frame["score"] = [
            score_sample(task, p, refs) for p, refs in zip(predictions, references, strict=True)
        ]
        return frame

    def aggregate(self, scored: pd.DataFrame) -> dict[str, Any]:
        return {**super().aggregate(scored), "split": self.split, "scored": self.split != "test"}

    def task_metrics(self, task: str, rows: pd.DataFrame) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "n": len(rows),
            "mean_response_chars": float(rows["response_chars"].mean()),
        }
        if self.split == "test":
            entry |= {"score": None, "n_scored": 0, "scored": False}
            entry["leaderboard_file"] = leaderboard_file(task)
            return entry
        entry |= {**super().task_metrics(task, rows), "scored": True, "metric": METRICS[task]}
        if METRICS[task] == "rouge_geometric_mean":  # corpus level, 0-100
            kept = rows.dropna(subset=list(ROUGE_TYPES))
            rouge = corpus_rouge(kept[list(ROUGE_TYPES)].to_dict("records"))
            entry |= {"score": rouge["geometric_mean"], **rouge}
        return entry

    def extra_outputs(self, scored: pd.DataFrame) -> dict[str, Any]:
        """Test split: one leaderboard submission per task, `{id: prediction}`."""
        if self.split != "test":
            return {}
        return {
            leaderboard_file(str(task)): dict(
                zip(rows["sample_id"].astype(str), rows["prediction"].astype(str), strict=True)
            )
            for task, rows in scored.groupby("task", sort=False)
        }
