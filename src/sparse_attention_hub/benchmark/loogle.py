"""LooGLE (Li et al., 2023): long-dependency QA, cloze and summarization over long documents.

Scored like LooGLE's `Evaluation/automatic_metrics.py` (docs/benchmarks.md §4): cloze
answers (the whole answer read as a Python dict literal) are micro-averaged mask matches; QA and
summarization report BLEU-1/4 (nltk), ROUGE-1/2/L recall (`rouge` 1.0.1), METEOR and optionally
BERTScore, with ROUGE-L recall as the primary score. METEOR runs on ordered token lists (the
official code passes Python sets, whose order changes with the hash seed). Metrics needing
resources that are not on this machine (WordNet, a BERTScore model) are reported as null with
the reason; nothing is ever downloaded.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.benchmark.averages import mean_percent
from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.registry import register_benchmark
from sparse_attention_hub.benchmark.scorers import parse_literal_dict, rouge_scores

logger = logging.getLogger(__name__)

HUB_ID = "simonjegou/loogle"
CLOZE_TASK = "shortdep_cloze"
TEXT_METRICS = ("bleu1", "bleu4", "rouge1", "rouge2", "rougeL", "meteor", "bertscore_f1")
_ROUGE_KEYS = {"rouge1": "rouge-1", "rouge2": "rouge-2", "rougeL": "rouge-l"}
BERTSCORE_LAYERS = 17
"""Layer of roberta-large that `bert_score` uses for `lang="en"`."""


def wordnet_missing() -> str | None:
    """Why METEOR cannot run here (WordNet not installed), or None. Never downloads."""
    import nltk

    for resource in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            nltk.data.find(resource)
            return None
        except LookupError:
            continue
    return "nltk WordNet corpus is not installed locally (METEOR needs it; nothing is downloaded)"


def cloze_counts(prediction: str, reference: dict[str, str]) -> tuple[int, int, bool]:
    """(exact matches, partial matches, parsed) of one cloze answer against its reference masks.

    As LooGLE's `get_exact_match` / `get_partial_match` (docs/benchmarks.md §4): the whole
    answer must be a dict literal, else no mask matches. Exact: the predicted value equals the
    reference string. Partial: its whitespace-token set meets the reference's. A value that is
    not a string (a list, a number, None) matches nothing; the official partial match crashes on
    it (`.split()` of a non-string), we count it as no match.
    """
    predicted = parse_literal_dict(prediction)
    if predicted is None:
        return 0, 0, False
    exact = partial = 0
    for key, gold in reference.items():
        if key not in predicted:
            continue
        value = predicted[key]
        exact += value == gold
        if isinstance(value, str):
            partial += bool(set(value.split()) & set(str(gold).split()))
    return exact, partial, True


def _bleu(reference: list[str], hypothesis: list[str], weights: tuple[float, ...]) -> float:
    from nltk.translate.bleu_score import sentence_bleu

    with warnings.catch_warnings():  # nltk warns on every zero n-gram overlap
        warnings.simplefilter("ignore")
        return float(sentence_bleu([reference], hypothesis, weights=weights))


def _rouge_recalls(hypothesis: str, reference: str) -> dict[str, float]:
    scores = rouge_scores(hypothesis, reference)
    return {name: float(scores[key]["r"]) for name, key in _ROUGE_KEYS.items()}


def _meteor(reference: list[str], hypothesis: list[str]) -> float:
    from nltk.translate.meteor_score import single_meteor_score

    return float(single_meteor_score(reference, hypothesis))


def text_metrics(
    prediction: str, reference: str, with_meteor: bool
) -> tuple[dict[str, float | None], list[str]]:
    """BLEU-1/4, ROUGE-1/2/L recall and METEOR of one answer, and the metrics that raised.

    An empty (or all-whitespace) prediction is scored as the text "None" (as LooGLE does); a
    metric that raises gives 0 for this row and is named in the returned list.
    """
    hypothesis = prediction if prediction.strip() else "None"
    hyp_tokens = hypothesis.replace("\n", " ").split()
    ref_tokens = reference.replace("\n", " ").split()
    groups: dict[tuple[str, ...], Callable[[], dict[str, float]]] = {
        ("bleu1",): lambda: {"bleu1": _bleu(ref_tokens, hyp_tokens, (1, 0, 0, 0))},
        ("bleu4",): lambda: {"bleu4": _bleu(ref_tokens, hyp_tokens, (0, 0, 0, 1))},
        tuple(_ROUGE_KEYS): lambda: _rouge_recalls(hypothesis, reference),
    }
    if with_meteor:
        groups[("meteor",)] = lambda: {"meteor": _meteor(ref_tokens, hyp_tokens)}
    values: dict[str, float | None] = {"meteor": None, "bertscore_f1": None}
    failed: list[str] = []
    for names, compute in groups.items():
        try:
            values.update(compute())
        except Exception as exc:  # the reference scorer also scores a crashing metric as 0
            logger.debug("LooGLE metric %s failed: %s", names, exc)
            values.update(dict.fromkeys(names, 0.0))
            failed.extend(names)
    return values, failed


@register_benchmark("loogle")
class LooGLE(Benchmark):
    """LooGLE's four tasks; local copy: `<data_path>/<subset>.jsonl` in the hub schema.

    `bertscore_model`: a local directory holding roberta-large (what `bert_score` picks for
    English); None (default) reports `bertscore_f1` as unavailable.
    """

    benchmark_name = "loogle"
    all_datasets: ClassVar[list[str]] = [
        "shortdep_qa",
        "longdep_qa",
        "shortdep_cloze",
        "longdep_summarization",
    ]
    hub_id = HUB_ID

    def __init__(
        self,
        subsets_to_run: Sequence[str] | None = None,
        data_path: str | Path | None = None,
        *,
        bertscore_model: str | None = None,
    ) -> None:
        super().__init__(subsets_to_run, data_path)
        self.bertscore_model = bertscore_model
        self._unavailable: dict[str, dict[str, str]] = {}

    def options(self) -> dict[str, Any]:
        return {**super().options(), "bertscore_model": self.bertscore_model}

    def subset_metrics(self) -> dict[str, str]:
        metrics = dict.fromkeys(self.all_datasets, "rougeL recall (+ bleu, rouge, meteor)")
        metrics[CLOZE_TASK] = "exact_match (micro, + partial_match)"
        return metrics

    # ----- scoring -------------------------------------------------------------------------
    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        if task == CLOZE_TASK:
            return self._score_cloze(rows)
        return self._score_text(task, rows)

    def _score_cloze(self, rows: pd.DataFrame) -> pd.DataFrame:
        records = []
        for prediction, answers in zip(rows["prediction"], rows["answers"], strict=True):
            reference = json.loads(answers[0])
            if not isinstance(reference, dict):
                raise ValueError(f"cloze answer must be a JSON object of masks, got {answers[0]!r}")
            exact, partial, parsed = cloze_counts(str(prediction), reference)
            masks = len(reference)
            records.append(
                {
                    "cloze_exact": exact,
                    "cloze_partial": partial,
                    "cloze_masks": masks,
                    "cloze_parsed": parsed,
                    "score": exact / masks if masks else None,
                }
            )
        return pd.DataFrame.from_records(records, index=rows.index)

    def _score_text(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        meteor_reason = wordnet_missing()
        unavailable = {"meteor": meteor_reason} if meteor_reason else {}
        records = []
        for prediction, answers in zip(rows["prediction"], rows["answers"], strict=True):
            values, failed = text_metrics(
                str(prediction), answers[0] if answers else "", not meteor_reason
            )
            records.append(
                {**values, "failed_metrics": ",".join(failed), "score": values["rougeL"]}
            )
        frame = pd.DataFrame.from_records(records, index=rows.index)
        f1, reason = self._bertscore(
            [str(p) if str(p).strip() else "None" for p in rows["prediction"]],
            [a[0] if a else "" for a in rows["answers"]],
        )
        if f1 is not None:
            frame["bertscore_f1"] = f1
        else:
            unavailable["bertscore_f1"] = reason
        self._unavailable[task] = unavailable
        return frame

    def _bertscore(
        self, hypotheses: list[str], references: list[str]
    ) -> tuple[list[float] | None, str]:
        """BERTScore F1 per row from a local model, or None and why it is unavailable."""
        if self.bertscore_model is None:
            return None, "no local BERTScore model configured (bertscore_model=None)"
        try:
            from bert_score import score
        except ImportError:
            return None, "the bert_score package is not installed"
        try:
            _, _, f1 = score(
                cands=hypotheses,
                refs=references,
                model_type=self.bertscore_model,
                num_layers=BERTSCORE_LAYERS,
            )
        except Exception as exc:  # a missing or broken local model is "unavailable", not 0
            return None, f"BERTScore failed: {type(exc).__name__}: {exc}"
        return [float(v) for v in f1.tolist()], ""

    def task_metrics(self, task: str, rows: pd.DataFrame) -> dict[str, Any]:
        """Cloze: micro-averaged mask matches. QA/summaries: mean of every metric. All 0-100."""
        return self._cloze_summary(rows) if task == CLOZE_TASK else self._text_summary(task, rows)

    @staticmethod
    def _cloze_summary(rows: pd.DataFrame) -> dict[str, Any]:
        masks = int(rows["cloze_masks"].sum())
        exact = 100.0 * int(rows["cloze_exact"].sum()) / masks if masks else None
        partial = 100.0 * int(rows["cloze_partial"].sum()) / masks if masks else None
        return {
            "score": exact,
            "n_scored": len(rows),
            "exact_match": exact,
            "partial_match": partial,
            "n_masks": masks,
            "n_unparsed": int((~rows["cloze_parsed"].astype(bool)).sum()),
        }

    def _text_summary(self, task: str, rows: pd.DataFrame) -> dict[str, Any]:
        failures = rows["failed_metrics"].fillna("").astype(str).str.split(",").explode()
        counts = failures[failures != ""].value_counts()
        summary: dict[str, Any] = {"score": mean_percent(rows["score"]), "n_scored": len(rows)}
        summary.update({m: mean_percent(rows[m]) if m in rows else None for m in TEXT_METRICS})
        summary["unavailable"] = dict(self._unavailable.get(task, {}))
        summary["metric_failures"] = {str(k): int(v) for k, v in counts.items()}
        return summary
