"""Scoring primitives shared by every benchmark (docs/benchmarks.md §0.7). Implement once here."""

from __future__ import annotations

import ast
import difflib
import functools
import logging
import re
import string
import threading
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sparse_attention_hub.benchmark.averages import mean_of, mean_percent

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


# ----- Chinese text, ROUGE-L, fuzzy ratio (LongBench; docs/benchmarks.md §0.7) -----------------
_ZH_PUNCTUATION = set(
    string.punctuation
    + "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏."
)
FUZZ_BACKEND = "difflib"
"""The SequenceMatcher behind `fuzz_ratio` (recorded in config.json; see `scorer_backends`)."""


def normalize_zh_answer(text: str) -> str:
    """Lower-case, drop ASCII and CJK punctuation, delete all whitespace (LongBench Chinese)."""
    text = "".join(ch for ch in text.lower() if ch not in _ZH_PUNCTUATION)
    return "".join(text.split())


@functools.cache
def _jieba() -> Any:
    """jieba, imported on first use with its start-up chatter sent to our log level."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def jieba_tokens(text: str) -> list[str]:
    """Words of `text` by jieba's default (precise, `cut_all=False`) mode."""
    return list(_jieba().cut(text, cut_all=False))


def qa_f1_zh(prediction: str, ground_truth: str) -> float:
    """Token F1 over jieba words, each normalised with `normalize_zh_answer`, empties dropped."""
    pred = [t for t in (normalize_zh_answer(w) for w in jieba_tokens(prediction)) if t]
    gold = [t for t in (normalize_zh_answer(w) for w in jieba_tokens(ground_truth)) if t]
    return token_f1(pred, gold)


class _RougeCall(threading.Thread):
    """One `Rouge().get_scores` call at the bottom of a fresh thread's stack.

    The package rebuilds the LCS recursively, so whether a long "sentence" raises
    `RecursionError` depends on how deep the caller's stack already is. On a new thread the
    call always starts at the same depth, so a sample scores the same from the executor, a test
    or a re-scoring script: `run` -> `get_scores` sits where the official `rouge_score` ->
    `get_scores` does under a script's module frame; `nested` adds the one frame of the
    official `rouge_zh_score` -> `rouge_score`.
    """

    def __init__(self, prediction: str, ground_truth: str, nested: bool) -> None:
        super().__init__(name="rouge-l", daemon=True)
        self.texts = ([prediction], [ground_truth])
        self.nested = nested
        self.scores: dict[str, dict[str, float]] = {}
        self.error: Exception | None = None

    def run(self) -> None:
        from rouge import Rouge

        rouge = Rouge()
        try:
            self.scores = (
                self._nested(rouge) if self.nested else rouge.get_scores(*self.texts, avg=True)
            )
        except Exception as exc:  # handed to the calling thread
            self.error = exc

    def _nested(self, rouge: Any) -> Any:
        return rouge.get_scores(*self.texts, avg=True)


def rouge_scores(
    prediction: str, ground_truth: str, *, nested: bool = False
) -> dict[str, dict[str, float]]:
    """Every score of `rouge` 1.0.1 (`{"rouge-1"|"rouge-2"|"rouge-l": {"f", "p", "r"}}`), computed
    at a fixed stack depth (`_RougeCall`); raises whatever the package raises."""
    call = _RougeCall(prediction, ground_truth, nested)
    call.start()
    call.join()
    if call.error is not None:
        raise call.error
    return call.scores


def _run_rouge(prediction: str, ground_truth: str, nested: bool) -> float:
    try:
        return float(rouge_scores(prediction, ground_truth, nested=nested)["rouge-l"]["f"])
    except Exception:  # the reference scorers count every failure of the package as 0
        return 0.0


def rouge_l(prediction: str, ground_truth: str) -> float:
    """ROUGE-L F of the `rouge` 1.0.1 package; any error it raises (empty text, deep LCS) -> 0.

    The package is called as is (not re-implemented) so its sentence splitting on ".", set-based
    counts and exceptions define the number, as in the official LongBench / LooGLE scorers; it
    runs at a fixed stack depth (`_RougeCall`) so the `RecursionError` cut-off is reproducible.
    """
    return _run_rouge(prediction, ground_truth, nested=False)


def rouge_l_zh(prediction: str, ground_truth: str) -> float:
    """`rouge_l` on jieba words joined by spaces (LongBench `rouge_zh_score`)."""
    tokens = " ".join(jieba_tokens(prediction)), " ".join(jieba_tokens(ground_truth))
    return _run_rouge(*tokens, nested=True)


def fuzz_ratio(a: str, b: str) -> int:
    """`fuzzywuzzy.fuzz.ratio` with the difflib backend, whatever else is installed.

    fuzzywuzzy silently switches to python-Levenshtein's matcher when it is importable, which
    gives different ratios; the official LongBench environment has difflib, so it is fixed here.
    Keeps fuzzywuzzy's rules: 100 if equal, 0 if either is empty, else round(100 x ratio).
    """
    from fuzzywuzzy import utils

    @utils.check_for_none
    @utils.check_for_equivalence
    @utils.check_empty_string
    def ratio(s1: str, s2: str) -> int:
        s1, s2 = utils.make_type_consistent(s1, s2)
        return int(utils.intr(100 * difflib.SequenceMatcher(None, s1, s2).ratio()))

    return int(ratio(a, b))


def scorer_backends() -> dict[str, str]:
    """Which implementation each package-backed primitive uses (for config.json)."""
    return {
        "fuzz_ratio": f"fuzzywuzzy.utils + {FUZZ_BACKEND}.SequenceMatcher",
        "rouge_l": "rouge.Rouge",
    }


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


def ruler_score_rows(task: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Per-sample RULER scores of one task's rows (`prediction`, `answers`), indexed like them."""
    scores = [
        ruler_sample_score(task, str(prediction), list(answers))
        for prediction, answers in zip(rows["prediction"], rows["answers"], strict=True)
    ]
    return pd.DataFrame({"score": scores}, index=rows.index)


def ruler_aggregate(scored: pd.DataFrame, benchmark_name: str) -> dict[str, Any]:
    """RULER metrics (docs/benchmarks.md §5) from per-sample scores, all on 0-100.

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


# ----- Literal-only parsing of generated dicts (LooGLE cloze; never run as code) -----------------
def parse_literal_dict(text: str) -> dict[Any, Any] | None:
    """The whole of `text` read as one Python literal, if that literal is a dict, else None.

    LooGLE's official scorer `eval`s the whole answer (docs/benchmarks.md §4). On every
    literal, `ast.literal_eval` accepts and rejects exactly what `eval` does (same parser, same
    leading-space rule), but it never runs code: an expression such as `"a" + "b"` is rejected
    here where `eval` would compute it. Text around the dict, a code fence, JSON `null`/`true`
    or two dicts make the answer unparsable, as in the official scorer.
    """
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence" in a generated string
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
