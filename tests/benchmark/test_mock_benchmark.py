"""`mock_benchmark`: the inline rows of the spec, grouping by context, hand-computed scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark import create_benchmark_instance
from sparse_attention_hub.benchmark.mock_benchmark import (
    CONTEXT_A,
    CONTEXT_B,
    CONTEXT_C,
    is_correct,
)
from sparse_attention_hub.benchmark.results_io import read_raw_results

Q_STEPS = "How many steps does the lighthouse on Merrow Point have?"
Q_KEEPER = "Who was the last resident keeper of the lighthouse?"
Q_STARTER = "What do the staff call the bakery's sourdough starter?"
Q_BREAD = "Where is the leftover bread donated each afternoon?"
Q_RIVER = "Which river is fed by the glacier's meltwater?"


def test_rows_are_exactly_the_spec() -> None:
    rows = create_benchmark_instance("mock_benchmark").load_samples()
    assert rows["sample_id"].tolist() == ["1", "2", "3", "4", "5"]
    assert rows["context"].tolist() == [CONTEXT_A, CONTEXT_A, CONTEXT_B, CONTEXT_B, CONTEXT_C]
    assert rows["question"].tolist() == [Q_STEPS, Q_KEEPER, Q_STARTER, Q_BREAD, Q_RIVER]
    assert rows["answers"].tolist() == [
        ["114"],
        ["Agnes Holloway"],
        ["Bartholomew"],
        ["Canal Road", "a shelter on Canal Road"],
        ["Ostby River"],
    ]
    assert set(rows["task"]) == {"reading_comprehension"}
    assert set(rows["answer_prefix"]) == {"Answer:"}
    assert set(rows["max_new_tokens"]) == {32}
    assert CONTEXT_A.startswith("The lighthouse on Merrow Point was built in 1871")
    assert CONTEXT_B.endswith("donated each afternoon to a shelter on Canal Road.")
    assert "about four hundred homes." in CONTEXT_C


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("  AGNES HOLLOWAY\n", ["Agnes Holloway"], True),
        ("It has 114 steps.", ["114"], True),
        ("a shelter on canal road", ["Canal Road", "a shelter on Canal Road"], True),
        ("Ostby", ["Ostby River"], False),
        ("", ["114"], False),
    ],
)
def test_correct_iff_the_prediction_contains_an_answer(
    prediction: str, answers: list[str], expected: bool
) -> None:
    assert is_correct(prediction, answers) is expected


def test_three_of_five_right_scores_sixty(tmp_path: Path) -> None:
    adapter = ScriptedAdapter(
        answers={
            Q_STEPS: " 114",
            Q_KEEPER: "The keeper was Agnes Holloway.",
            Q_STARTER: "Bart",  # wrong
            Q_BREAD: "To a shelter on Canal Road.",
            Q_RIVER: "The Tessel",  # wrong
        }
    )
    metrics = create_benchmark_instance("mock_benchmark").run_benchmark(adapter, tmp_path)
    assert [c["questions"] for c in adapter.calls] == [
        [Q_STEPS, Q_KEEPER],
        [Q_STARTER, Q_BREAD],
        [Q_RIVER],
    ]
    assert [c["answer_prefix"] for c in adapter.calls] == ["Answer:"] * 3
    task = metrics["tasks"]["reading_comprehension"]
    assert task["score"] == pytest.approx(60.0)
    assert (task["n_correct"], task["n_scored"], task["n_available"]) == (3, 5, 5)
    assert metrics["overall"] == pytest.approx(60.0)

    raw = read_raw_results(tmp_path / "raw_results.csv").set_index("sample_id")
    assert raw["score"].to_dict() == {"1": 1.0, "2": 1.0, "3": 0.0, "4": 1.0, "5": 0.0}
    assert raw["correct"].tolist() == [True, True, False, True, False]
    assert raw.loc["3", "prediction"] == "Bart"
