"""Shared scoring primitives (docs/benchmarks.md §0.7) against hand-computed values."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparse_attention_hub.benchmark import scorers
from sparse_attention_hub.benchmark.scorers import (
    fuzz_ratio,
    jieba_tokens,
    normalize_answer,
    normalize_zh_answer,
    qa_f1,
    qa_f1_zh,
    rouge_l,
    rouge_l_zh,
    token_f1,
)


def test_normalize_answer_drops_case_punctuation_articles_and_extra_space() -> None:
    assert normalize_answer("The Cat, sat!  an apple") == "cat sat apple"
    assert normalize_answer("Theatre a-b") == "theatre ab"  # "the" only as a whole word


def test_normalize_zh_answer_drops_cjk_and_ascii_punctuation_and_all_whitespace() -> None:
    assert normalize_zh_answer("你好，World！ 再见。") == "你好world再见"
    # the official set has "》" but not "《": the opening bracket survives
    assert normalize_zh_answer("《三体》—— 刘慈欣…") == "《三体刘慈欣"


def test_token_f1_counts_the_multiset_intersection() -> None:
    # common = {b: 2}: P = 2/3, R = 2/4, F1 = 2PR/(P+R) = 4/7
    assert token_f1(["a", "b", "b"], ["b", "b", "c", "d"]) == pytest.approx(4 / 7)
    assert token_f1(["x"], ["y"]) == 0.0
    assert token_f1([], ["y"]) == 0.0


def test_qa_f1_normalises_before_comparing() -> None:
    # [eiffel, tower] vs [eiffel, tower, in, paris]: P = 1, R = 1/2 -> 2/3
    assert qa_f1("The Eiffel Tower!", "eiffel tower in Paris") == pytest.approx(2 / 3)
    assert qa_f1("", "Paris") == 0.0
    assert qa_f1("An apple", "the APPLE.") == 1.0


def test_qa_f1_zh_uses_jieba_words() -> None:
    assert jieba_tokens("我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    # [北京, 天安门] vs [我, 爱, 北京, 天安门]: P = 1, R = 1/2
    assert qa_f1_zh("北京天安门", "我爱北京天安门") == pytest.approx(2 / 3)
    # the "，" token normalises to "" and is dropped, so gold has 2 tokens, not 3
    assert qa_f1_zh("北京", "北京，上海") == pytest.approx(2 / 3)
    assert qa_f1_zh("", "北京") == 0.0


def test_rouge_l_is_the_rouge_package_summary_level_lcs() -> None:
    # hypothesis words as a set {the, cat, sat, on, mat} = 5, reference 6, LCS 5:
    # P = 1, R = 5/6, F = 2PR/(P+R+1e-8)
    expected = 2 * (5 / 6) / (1 + 5 / 6 + 1e-8)
    assert rouge_l("the cat sat on the mat", "the cat sat on a mat") == pytest.approx(
        expected, rel=1e-12
    )
    # "." splits the hypothesis into sentences whose LCS hits are unioned: 4 of 5 vs 3 of 5
    assert rouge_l("mat on. the cat sat", "the cat sat on the mat") == pytest.approx(0.8, rel=1e-7)
    assert rouge_l("mat on the cat sat", "the cat sat on the mat") == pytest.approx(0.6, rel=1e-7)


@pytest.mark.parametrize("prediction", ["", ".", "   "])
def test_rouge_l_empty_hypothesis_scores_zero(prediction: str) -> None:
    assert rouge_l(prediction, "the cat") == 0.0


def test_rouge_l_deep_lcs_recursion_scores_zero() -> None:
    words = " ".join(f"w{i}" for i in range(1050))  # LCS reconstruction recurses past the limit
    assert rouge_l(words, "w0") == 0.0  # a 1050 x 1 table: recursion 1050 deep, built quickly
    assert rouge_l(words[:3000], "w0") > 0.0


# The official LongBench layout: a script's module frame -> scorer -> metric -> get_scores.
_OFFICIAL_LAYOUT = """
from rouge import Rouge
def rouge_score(prediction, ground_truth):
    try:
        scores = Rouge().get_scores([prediction], [ground_truth], avg=True)
    except Exception:
        return 0.0
    return scores["rouge-l"]["f"]
def rouge_zh_score(prediction, ground_truth):
    return rouge_score(prediction, ground_truth)
def scorer(metric, n):
    return metric(" ".join(f"w{i}" for i in range(n)), "w0")
for metric in (rouge_score, rouge_zh_score):
    lo, hi = 500, 1500
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if scorer(metric, mid) > 0 else (lo, mid - 1)
    print(lo)
"""


def _longest_scored(metric: Callable[[str, str], float]) -> int:
    """Most hypothesis words that still score (LCS reconstruction recurses once per word)."""
    lo, hi = 500, 1500
    while lo < hi:
        mid = (lo + hi + 1) // 2
        words = " ".join(f"w{i}" for i in range(mid))
        lo, hi = (mid, hi) if metric(words, "w0") > 0 else (lo, mid - 1)
    return lo


def _deeper(frames: int, fn: Callable[[], int]) -> int:
    return fn() if frames == 0 else _deeper(frames - 1, fn)


def test_rouge_l_recursion_cutoff_is_the_official_one_at_any_caller_depth() -> None:
    official = subprocess.run(
        [sys.executable, "-c", _OFFICIAL_LAYOUT], capture_output=True, text=True, check=True
    ).stdout.split()
    cutoff = _longest_scored(rouge_l)
    assert _deeper(150, lambda: _longest_scored(rouge_l)) == cutoff  # the caller's stack is moot
    zh_cutoff = _longest_scored(lambda p, g: scorers._run_rouge(p, g, nested=True))
    assert [str(cutoff), str(zh_cutoff)] == official


def test_rouge_l_zh_joins_jieba_words() -> None:
    # hyp {我, 爱, 北京, 天安门}, ref {北京, 天安门}: P = 1/2, R = 1
    assert rouge_l_zh("我爱北京天安门", "北京天安门") == pytest.approx(2 * 0.5 / (1.5 + 1e-8))


def test_fuzz_ratio_rules() -> None:
    assert fuzz_ratio("abc", "abd") == 67  # difflib: 2 * 2 / 6
    assert fuzz_ratio("kitten", "sitting") == 62  # 2 * 4 / 13
    assert fuzz_ratio("", "") == 100
    assert fuzz_ratio("", "x") == 0
    assert fuzz_ratio("x", "") == 0


def test_fuzz_ratio_ignores_the_matcher_fuzzywuzzy_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fuzzywuzzy import fuzz

    class Levenshteinish:
        def __init__(self, *args: object) -> None:
            pass

        def ratio(self) -> float:
            return 0.0

    monkeypatch.setattr(fuzz, "SequenceMatcher", Levenshteinish)
    assert fuzz.ratio("abc", "abd") == 0  # what a swapped backend would do to fuzz.ratio
    assert fuzz_ratio("abc", "abd") == 67
    assert scorers.scorer_backends()["fuzz_ratio"].endswith("difflib.SequenceMatcher")


@given(
    st.lists(st.sampled_from("abcde"), max_size=8), st.lists(st.sampled_from("abcde"), max_size=8)
)
def test_token_f1_is_symmetric_and_bounded(p: list[str], g: list[str]) -> None:
    value = token_f1(p, g)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(token_f1(g, p))
    if p and sorted(p) == sorted(g):
        assert value == pytest.approx(1.0)
