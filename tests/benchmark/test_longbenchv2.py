"""LongBench-v2: answer extraction, difficulty/length buckets, shared contexts, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark import create_benchmark_instance
from sparse_attention_hub.benchmark.longbenchv2 import LongBenchV2, extract_choice
from sparse_attention_hub.benchmark.results_io import read_raw_results
from sparse_attention_hub.errors import ConfigError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "longbenchv2"


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("The correct answer is (B)", "B"),
        ("**The correct answer is (C)**", "C"),  # markdown bold is removed first
        ("The correct answer is D.", "D"),
        ("The correct answer is (E)", None),
        ("Reasoning... The correct answer is A. Wait, The correct answer is (B)", "B"),  # (X) first
        ("the correct answer is (A)", None),  # case-sensitive, as the official regex
        ("B", None),
        ("", None),
    ],
)
def test_extract_choice(response: str, letter: str | None) -> None:
    assert extract_choice(response) == letter


def test_rows_keep_metadata_and_subsets_share_contexts() -> None:
    bench = LongBenchV2(data_path=FIXTURES)
    zero, cot = bench.load_subset("0shot"), bench.load_subset("cot")
    assert zero["context"].tolist() == cot["context"].tolist()
    assert zero["context"][0].startswith(
        "Please read the following text and answer the question below.\n\n<text>\n"
    )
    assert zero["question"][1].endswith(
        "(A) red river\n(B) old house\n(C) small boat\n(D) high hill\n\n"
    )
    fmt = 'Format your response as follows: "The correct answer is (insert answer here)".'
    assert zero["answer_prefix"][0] == fmt
    assert cot["answer_prefix"][0] == fmt + "\n\nLet’s think step by step:"  # as the hub rows
    assert (zero["max_new_tokens"][0], cot["max_new_tokens"][0]) == (148, 1044)
    assert zero["answers"].tolist() == [["D"], ["C"], ["B"]]
    assert zero["sample_id"][0] == "66f3a1c2821e116aacb2a001"
    for column in ("difficulty", "length", "domain", "sub_domain", "answer"):
        assert column in zero.columns


def test_a_parquet_copy_loads_like_the_jsonl_one(tmp_path: Path) -> None:
    pd.read_json(FIXTURES / "cot.jsonl", lines=True, dtype=False).to_parquet(
        tmp_path / "cot.parquet"
    )
    from_parquet = LongBenchV2(["cot"], data_path=tmp_path).load_subset("cot")
    from_jsonl = LongBenchV2(["cot"], data_path=FIXTURES).load_subset("cot")
    pd.testing.assert_frame_equal(from_parquet, from_jsonl, check_dtype=False)
    assert from_parquet["answers"].tolist() == [["D"], ["C"], ["B"]]


@pytest.mark.parametrize("subset", ["0shot", "cot"])
def test_original_records_are_built_into_the_same_rows(subset: str) -> None:
    # raw_records has stray whitespace around a document, a question and a choice: stripped
    built = LongBenchV2([subset], data_path=FIXTURES / "raw_records.jsonl").load_subset(subset)
    hub = LongBenchV2([subset], data_path=FIXTURES).load_subset(subset)
    for column in ("context", "question", "answer_prefix", "max_new_tokens", "answer", "sample_id"):
        assert built[column].tolist() == hub[column].tolist(), column


def test_aggregate_buckets_with_null_for_empty_categories() -> None:
    scored = pd.DataFrame(
        {
            "task": ["0shot"] * 3,
            "score": [1.0, 0.0, 1.0],
            "difficulty": ["easy", "hard", "hard"],
            "length": ["short", "short", "medium"],
        }
    )
    entry = LongBenchV2().aggregate(scored)["tasks"]["0shot"]
    assert entry["score"] == pytest.approx(200 / 3)
    assert (entry["easy"], entry["hard"]) == (100.0, 50.0)
    assert (entry["short"], entry["medium"], entry["long"]) == (50.0, 100.0, None)
    assert (entry["n_long"], entry["n_hard"]) == (0, 2)


def test_end_to_end_both_subsets(tmp_path: Path) -> None:
    # One job per subset, as the executor runs them (both subsets share sample ids).
    # 0shot: rows 1 and 2 right ("**" and plain forms); cot: only row 1 right.
    predictions = {
        "0shot": ["I think (D).", "**The correct answer is (C)**", "The correct answer is B"],
        "cot": ["The correct answer is (A)", "Step 1... The correct answer is (C)", ""],
    }
    raw_frames = []
    for subset, answers in predictions.items():
        bench = LongBenchV2([subset], data_path=FIXTURES)
        rows = bench.load_samples()
        lookup = dict(zip(rows["question"], answers, strict=True))
        metrics = bench.run_benchmark(ScriptedAdapter(lookup), tmp_path / subset)
        saved = json.loads((tmp_path / subset / "metrics.json").read_text())
        assert saved["overall"] == pytest.approx(metrics["overall"])
        assert saved["overall"] == pytest.approx(saved["tasks"][subset]["score"])
        raw_frames.append(read_raw_results(tmp_path / subset / "raw_results.csv"))

    raw = pd.concat(raw_frames, ignore_index=True)
    assert raw["extracted"].fillna("").tolist() == ["", "C", "B", "A", "C", ""]
    # re-scoring the saved results of both jobs together: overall = mean of the two subsets
    metrics = LongBenchV2().post_run_evaluate(raw.drop(columns=["score", "extracted"]))
    zero, cot = metrics["tasks"]["0shot"], metrics["tasks"]["cot"]
    assert zero["score"] == pytest.approx(200 / 3) and cot["score"] == pytest.approx(100 / 3)
    assert metrics["overall"] == pytest.approx(50.0)
    # rows: (easy, short), (hard, medium), (hard, short)
    assert (zero["easy"], zero["hard"], zero["short"], zero["medium"]) == (0.0, 100.0, 50.0, 100.0)
    assert (cot["easy"], cot["hard"], cot["short"], cot["medium"]) == (0.0, 50.0, 0.0, 100.0)
    assert zero["long"] is None and metrics["buckets"]["length"]["cot"]["long"] is None


# (prediction, gold) -> counted by hand: 4 right, 3 wrong, 3 empty of 10
EMPTY_CASES = [
    ("The correct answer is (A)", "A"),
    ("The correct answer is (B)", "B"),
    ("The correct answer is C", "C"),
    ("**The correct answer is (D)**", "D"),
    ("The correct answer is (A)", "B"),
    ("I cannot tell.", "C"),
    (" ", "D"),  # whitespace is an answer (wrong), not an empty output
    ("", "A"),
    ("", "B"),
    ("", "C"),
]


def _empty_case_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": ["0shot"] * len(EMPTY_CASES),
            "prediction": [p for p, _ in EMPTY_CASES],
            "answer": [a for _, a in EMPTY_CASES],
            "difficulty": ["easy"] * 5 + ["hard"] * 5,
            "length": ["short"] * len(EMPTY_CASES),
        }
    )


@pytest.mark.parametrize(
    ("mode", "score", "n_scored", "easy", "hard"),
    [
        ("wrong", 40.0, 10, 80.0, 0.0),  # ours: an empty output is a wrong answer
        ("drop", 4 / 7 * 100, 7, 80.0, 0.0),  # official pred.py: empty outputs are left out
    ],
)
def test_empty_answers_counted_and_optionally_dropped(
    mode: str, score: float, n_scored: int, easy: float, hard: float
) -> None:
    bench = LongBenchV2(empty_answers=mode)
    rows = _empty_case_rows()
    scored = rows.join(bench.score_task("0shot", rows))
    entry = bench.aggregate(scored)["tasks"]["0shot"]
    assert entry["score"] == pytest.approx(score)
    assert (entry["n_scored"], entry["n_empty"], entry["empty_answers"]) == (n_scored, 3, mode)
    assert (entry["easy"], entry["hard"]) == pytest.approx((easy, hard))


def test_empty_answers_option_is_validated_and_fingerprinted() -> None:
    with pytest.raises(ConfigError, match=r"empty_answers 'skip' is not one of wrong, drop"):
        LongBenchV2(empty_answers="skip")
    assert LongBenchV2().options()["empty_answers"] == "wrong"
    assert LongBenchV2(empty_answers="drop").options()["empty_answers"] == "drop"
    bench = create_benchmark_instance("longbenchv2", ["0shot"], empty_answers="drop")
    assert bench.options() != LongBenchV2(["0shot"]).options()  # different jobs, different dirs


def test_drop_mode_end_to_end_records_n_empty(tmp_path: Path) -> None:
    bench = LongBenchV2(["0shot"], data_path=FIXTURES, empty_answers="drop")
    rows = bench.load_samples()
    answers = ["", "The correct answer is (C)", "The correct answer is B"]
    lookup = dict(zip(rows["question"], answers, strict=True))
    metrics = bench.run_benchmark(ScriptedAdapter(lookup), tmp_path)
    entry = json.loads((tmp_path / "metrics.json").read_text())["tasks"]["0shot"]
    assert (entry["n_empty"], entry["n_scored"]) == (1, 2)
    assert entry["score"] == pytest.approx(100.0) == metrics["overall"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["benchmark_options"]["empty_answers"] == "drop"
