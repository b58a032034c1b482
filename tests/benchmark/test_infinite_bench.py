"""InfiniteBench: each official scorer, label types at load (JSONL and parquet), end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark import _infinite_bench_scorers as ib
from sparse_attention_hub.benchmark.infinite_bench import (
    InfiniteBench,
    normalise_label,
    option_text,
)
from sparse_attention_hub.benchmark.results_io import read_raw_results

FIXTURES = Path(__file__).parents[1] / "fixtures" / "infinite_bench"
UUID = "c93a1d07-5e2b-4f6a-8d3c-0a9b7e6f5d42"


@pytest.mark.parametrize(
    ("prediction", "correct"),
    [("71432.", True), ("The pass key is 71432", True), ("7 1432", False), ("", False)],
)
def test_digits_match_uses_the_first_integer(prediction: str, correct: bool) -> None:
    assert ib.digits_match(prediction, ["71432"]) is correct


def test_kv_retrieval_splits_on_punctuation() -> None:
    assert ib.kv_retrieval(f'The value is "{UUID}".', [UUID])
    assert ib.kv_retrieval(f"{{key: {UUID}}}", [UUID])
    assert not ib.kv_retrieval(f"{UUID}x", [UUID])


@pytest.mark.parametrize(
    ("prediction", "correct"),
    [
        ("-11", True),
        ("The answer is: -11.", True),
        ("`-11`", True),
        ("-11 is the value", False),  # the last word is not an integer
        ("", False),
        ("12", False),
    ],
)
def test_code_run_reads_the_last_word(prediction: str, correct: bool) -> None:
    assert ib.code_run(prediction, -11) is correct


@pytest.mark.parametrize(
    ("prediction", "official", "lenient"),
    [
        ("B. load_rows", True, True),
        ("B:", True, True),
        ("The answer is: B", True, True),
        ("The correct option is: load_rows", True, True),  # function name after "is:"
        ("The answer is B", False, True),  # no "answer is:" form; last letter B
        ("Option B", False, True),
        ("My answer is:", False, False),  # nothing after the cue
        ("The answer is: A, not B", False, True),
    ],
)
def test_code_debug(prediction: str, official: bool, lenient: bool) -> None:
    label = ["load_rows", "B"]
    assert ib.code_debug(prediction, label) is official
    assert ib.LENIENT["code_debug"](prediction, label) is lenient


@pytest.mark.parametrize(
    ("prediction", "label", "correct"),
    [
        ("42", 42, True),
        ("The largest is 42.", 42, True),
        ("4 2", 42, False),
        ("-3", -3, False),  # the official regex has no minus sign
        ("12.5", 12.5, True),
        ("12", 12.5, False),
        ("2.5", 2, False),  # a decimal for an integer label is wrong, not a crash
        ("none", 42, False),
    ],
)
def test_math_find(prediction: str, label: int | float, correct: bool) -> None:
    assert ib.math_find(prediction, label) is correct


@pytest.mark.parametrize(
    ("prediction", "official", "lenient"),
    [
        ("A", True, True),
        ("B", False, False),
        ("Working in the dairy", True, True),
        ("The answer is: A", True, True),
        ("the answer is Working in the dairy", True, True),
        ("I pick (A)", False, True),
        ("My choice: C", False, False),  # first word found in "ABCD" is C
        ("Maybe AB", False, False),  # "AB" is a substring of "ABCD" and decides (wrongly)
        ("", False, False),
    ],
)
def test_longbook_choice(prediction: str, official: bool, lenient: bool) -> None:
    label = ["Working in the dairy", "A"]
    assert ib.longbook_choice(prediction, label) is official
    assert ib.LENIENT["longbook_choice_eng"](prediction, label) is lenient


@pytest.mark.parametrize(
    ("prediction", "official", "lenient"),
    [
        ("Ace.", True, True),
        ("It's Ace Rothstein's line", True, True),
        ("ACEY", False, True),  # lenient: substring of the upper-cased prediction
        ("Nicky", False, False),
    ],
)
def test_longdialogue(prediction: str, official: bool, lenient: bool) -> None:
    label = ["ACE", "ACE ROTHSTEIN"]
    assert ib.longdialogue(prediction, label) is official
    assert ib.LENIENT["longdialogue_qa_eng"](prediction, label) is lenient


def test_longbook_qa_is_max_token_f1() -> None:
    assert ib.longbook_qa("Peyton Smith", ["Peyton"]) == pytest.approx(2 / 3)
    assert ib.longbook_qa("every Sunday", ["Sunday", "every Sunday"]) == 1.0


# ----- labels -------------------------------------------------------------------------------
def test_normalise_label_types() -> None:
    question = "Which?\nA. parse_header\nB. load_rows\nC. x\nD. y"
    assert normalise_label("code_debug", ["B"], question) == ["load_rows", "B"]
    assert normalise_label("code_run", ["-11"], "") == -11
    assert type(normalise_label("math_find", ["42"], "")) is int
    assert normalise_label("math_find", ["12.5"], "") == 12.5
    assert normalise_label("passkey", ["71432"], "") == ["71432"]
    assert option_text(question, "A") == "parse_header"
    quoting = "Who signed?\nA. Smith wrote the note.\n\nOptions:\nA. Mary \nB. Ann"
    assert option_text(quoting, "A") == "Mary "  # the appended option line, text kept whole
    with pytest.raises(ValueError, match=r"E\. "):
        option_text(question, "E")


@pytest.mark.parametrize("folder", [FIXTURES, FIXTURES / "parquet"])
def test_labels_are_python_types_after_loading(folder: Path) -> None:
    tasks = ["code_run", "math_find", "longbook_choice_eng"]
    rows = InfiniteBench(tasks, data_path=folder).load_samples()
    labels = dict(zip(rows["sample_id"], rows["label"], strict=True))
    assert labels["code_run:0"] == -11 and type(labels["code_run:0"]) is int
    assert [type(labels[f"math_find:{i}"]) for i in range(3)] == [int, int, float]
    choice = labels["longbook_choice_eng:1"]
    assert choice == ["To pay the miller's debts", "C"] and type(choice) is list
    assert all(type(a) is list and type(a[0]) is str for a in rows["answers"])


def test_a_raising_scorer_is_an_error_not_a_zero() -> None:
    results = pd.DataFrame(
        {
            "task": ["code_debug", "passkey"],
            "prediction": ["B.", "123"],
            "answers": [["E"], ["123"]],  # no option line "E. ..." in the question: raises
            "question": ["Which?\nA. f\nB. g\nC. h\nD. i", "What is the pass key?"],
        }
    )
    metrics = InfiniteBench().post_run_evaluate(results)
    assert metrics["errors"]["code_debug"].startswith("ValueError")
    assert metrics["tasks"]["code_debug"]["score"] is None
    assert metrics["overall"] == 100.0


# ----- end to end ---------------------------------------------------------------------------
PREDICTIONS = {
    "passkey": ["71432.", "It is 9 0817"],
    "kv_retrieval": [f'"{UUID}".', "not sure"],
    "number_string": ["2200012222", ""],
    "code_run": ["-11", "The value is 12."],
    "code_debug": ["B. load_rows", "The answer is C"],
    "math_find": ["42", "-3", "12.5"],
    "longbook_qa_eng": ["Peyton Smith", "Sunday"],
    "longdialogue_qa_eng": ["ACE.", "MARYANNE-LOU"],
    "longbook_choice_eng": ["A", "I pick (C)"],
}


def test_end_to_end_all_tasks(tmp_path: Path) -> None:
    bench = InfiniteBench(data_path=FIXTURES)
    samples = bench.load_samples()
    lookup: dict[tuple[str, str], str] = {}
    for task, rows in samples.groupby("task", sort=False):
        for (_, row), prediction in zip(rows.iterrows(), PREDICTIONS[str(task)], strict=True):
            lookup[(row["context"], row["question"])] = prediction
    bench.run_benchmark(ScriptedAdapter(answer_fn=lambda c, q: lookup[(c, q)]), tmp_path)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    tasks = metrics["tasks"]
    expected = {task: 50.0 for task in PREDICTIONS}
    expected["math_find"] = 200 / 3
    expected["longbook_qa_eng"] = 100 * (2 / 3 + 1) / 2
    for task, score in expected.items():
        assert tasks[task]["score"] == pytest.approx(score), task
    for task in ("code_debug", "longdialogue_qa_eng", "longbook_choice_eng"):
        assert tasks[task]["score_lenient"] == 100.0
    assert "score_lenient" not in tasks["passkey"]
    assert metrics["overall"] == pytest.approx(500 / 9)
    assert (metrics["scale"], metrics["errors"], metrics["missing_subsets"]) == ("0-100", {}, [])
    raw = read_raw_results(tmp_path / "raw_results.csv")
    assert len(raw) == 19 and set(raw["score"]) == {0.0, 1.0, 2 / 3}
    # scoring is a pure function of the saved results: re-scoring the CSV gives the same metrics
    rescored = InfiniteBench().post_run_evaluate(raw.drop(columns=["score", "score_lenient"]))
    for task, entry in rescored["tasks"].items():
        assert entry["score"] == pytest.approx(tasks[task]["score"]), task
        assert entry.get("score_lenient") == tasks[task].get("score_lenient")
