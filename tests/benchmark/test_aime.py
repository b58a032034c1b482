"""AIME 2024/2025: Qwen2.5-Math-style answer extraction, exact integer equality, fixture runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark import create_benchmark_instance
from sparse_attention_hub.benchmark._math_answer import (
    extract_integer_answer,
    integer_value,
    last_box,
)
from sparse_attention_hub.benchmark.aime import gold_integer, score_aime
from sparse_attention_hub.benchmark.results_io import read_raw_results

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


# Hand-checked against Qwen2.5-Math's extract_answer + math_equal (docs/benchmarks.md §7).
# The cases marked "changed" scored differently before the fix (issue 11).
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so the count is \boxed{033}", (33, "boxed")),
        (r"\boxed{468.0}", (468, "boxed")),  # changed: was 0 (last integer in the box)
        (r"\boxed{0468}", (468, "boxed")),
        (r"\boxed{\dfrac{601}{1}}", (601, "boxed")),  # changed: was 1
        (r"\boxed{1{,}024}", (1024, "boxed")),
        (r"\boxed{1,000}", (1000, "boxed")),
        (r"\boxed{\frac{1}{2}}", (None, "boxed")),  # changed: was 2; a fraction, not an integer
        (r"\boxed{\dfrac{3}{\sqrt{4}}}", (None, "boxed")),  # changed: was 4; an expression
        (r"\boxed{2^{3}}", (None, "boxed")),  # changed: was 3
        (r"\boxed{400+68}", (None, "boxed")),  # changed: was 68
        (r"\boxed{1,02}", (None, "boxed")),  # changed: was 2; commas group thousands only
        (r"\boxed{468.5}", (None, "boxed")),  # changed: was 5
        (r"\boxed{\text{ 42 }}", (42, "boxed")),
        (r"\boxed{\mathbf{\text{7}}}", (7, "boxed")),
        (r"\boxed{468 \text{ ways}}", (468, "boxed")),  # a unit after the number
        (r"\boxed{n = 468}", (468, "boxed")),
        (r"\boxed{$\!12$}", (12, "boxed")),
        (r"\boxed{ +7. }", (7, "boxed")),
        (r"\boxed{-\frac{8}{2}}", (-4, "boxed")),
        (r"first \boxed{5}, then \fbox{9}", (9, "boxed")),  # the last box wins
        (r"\boxed{5} and then \boxed{12", (12, "boxed")),  # changed: a cut-off last box decides
        (r"\boxed{x}", (None, "boxed")),  # a box decides even when it holds no number
        ("The final answer is $204$. I hope it is correct.", (204, "minerva")),
        ("So the final answer is 204.", (204, "answer_phrase")),
        ("Answer: $17$ ... wait, the answer is 19", (19, "answer_phrase")),
        ("The answer is **1,024** ways.", (1024, "answer_phrase")),  # changed: was 1
        ("The answer is 10^3", (None, "answer_phrase")),  # changed: was 10
        ("所以答案是 33。", (33, "chinese_cue")),  # changed: was 33 by "last_line" only
        ("答案是：$\\dfrac{66}{2}$\n\n还有 7", (33, "chinese_cue")),  # changed: was 7
        ("We get 12 cases.\nThus 3.5 and 44 and 1234\n\n", (1234, "last_number")),  # changed: 44
        ("the total is 12,345", (12345, "last_number")),  # changed: was None (over 999)
        ("no digits at all", (None, "none")),
        ("", (None, "none")),
    ],
)
def test_extract_integer_answer(text: str, expected: tuple[int | None, str]) -> None:
    assert extract_integer_answer(text) == expected


def test_last_box_keeps_nested_braces() -> None:
    assert last_box(r"x \boxed{\frac{a}{b}} y") == r"\frac{a}{b}"
    assert last_box(r"\boxed 5$ and more") == "5"
    assert last_box("no box") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,024", 1024),
        ("-3.50", None),
        ("7/1", 7),
        ("\\frac{601}{1}", 601),
        ("0", 0),
        ("1/0", None),
    ],
)
def test_integer_value_is_exact(text: str, value: int | None) -> None:
    assert integer_value(text) == value


def test_gold_is_compared_as_integer() -> None:
    assert gold_integer(["033"]) == 33
    assert gold_integer([" 7 "]) == 7
    assert gold_integer(["x"]) is None
    rows = pd.DataFrame(
        {
            "prediction": [r"\boxed{33}", r"\boxed{033}", "answer: 34"],
            "answers": [["033"], ["33"], ["33"]],
        }
    )
    scored = score_aime(rows)
    assert scored["correct"].tolist() == [True, True, False]
    assert scored["score"].tolist() == [1.0, 1.0, 0.0]
    assert scored["rule"].tolist() == ["boxed", "boxed", "last_number"]  # "answer:" is no cue


def test_non_integer_gold_is_an_error() -> None:
    rows = pd.DataFrame({"prediction": ["1"], "answers": [["one"]]})
    with pytest.raises(ValueError, match="not an integer"):
        score_aime(rows)


def test_aime2024_end_to_end(tmp_path: Path) -> None:
    bench = create_benchmark_instance("aime2024", data_path=FIXTURES / "aime2024")
    samples = bench.load_samples()
    assert samples["answers"].tolist() == [["24"], ["33"], ["96"], ["25"]]
    assert samples["sample_id"].tolist() == ["2024-I-1", "2024-I-2", "2024-II-3", "2024-II-4"]
    questions = samples["question"].tolist()
    adapter = ScriptedAdapter(
        answers={
            questions[0]: r"2^10 = 1024, so the remainder is \boxed{024}.",
            questions[1]: "There are 33 divisors. The final answer is 33",
            questions[2]: "x = 12, y = 8 so xy = 96\n",
            questions[3]: "",
        }
    )
    metrics = bench.run_benchmark(adapter, tmp_path)
    task = metrics["tasks"]["aime2024"]
    assert task["score"] == pytest.approx(75.0)
    assert task["n_correct"] == 3
    assert task["n_scored"] == 4
    assert task["extraction_rate"] == pytest.approx(75.0)
    assert task["boxed_rate"] == pytest.approx(25.0)
    assert metrics["overall"] == pytest.approx(75.0)
    assert (
        json.loads((tmp_path / "metrics.json").read_text())["tasks"]["aime2024"]["n_correct"] == 3
    )
    raw = read_raw_results(tmp_path / "raw_results.csv")
    assert raw["rule"].tolist() == ["boxed", "answer_phrase", "last_number", "none"]
    assert raw["extracted"].astype(str).tolist() == ["24", "33", "96", ""]  # "" = nothing extracted
    assert raw["score"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert adapter.calls[0]["generation_kwargs"]["max_new_tokens"] == 32000


def test_aime2025_end_to_end(tmp_path: Path) -> None:
    bench = create_benchmark_instance("aime2025", data_path=FIXTURES / "aime2025")
    samples = bench.load_samples()
    assert samples["answers"].tolist() == [["8"], ["1"], ["84"]]  # one-element lists stay lists
    assert all(isinstance(a, list) for a in samples["answers"])
    questions = samples["question"].tolist()
    adapter = ScriptedAdapter(
        answers={
            questions[0]: r"\boxed{8}",
            questions[1]: r"\boxed{1,001}",
            questions[2]: r"The perimeter is \boxed{\text{84}}",
        }
    )
    metrics = bench.run_benchmark(adapter, tmp_path, generation_kwargs={"max_new_tokens": 64})
    task = metrics["tasks"]["aime2025"]
    assert task["score"] == pytest.approx(200 / 3)
    assert (task["n_correct"], task["n_scored"]) == (2, 3)
    assert task["boxed_rate"] == pytest.approx(100.0)
    assert adapter.calls[0]["generation_kwargs"]["max_new_tokens"] == 64  # min(user cap, row cap)
    assert bench.subset_metrics() == {"aime2025": "accuracy (integer answer)"}
