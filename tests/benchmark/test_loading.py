"""Row loading: answer cells to `list[str]`, and local CSV copies with JSON-encoded lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sparse_attention_hub.benchmark.loading import as_str_list, normalise_rows, read_local
from sparse_attention_hub.benchmark.results_io import write_raw_results


def test_a_string_answer_is_one_answer_even_when_it_looks_like_a_list() -> None:
    # a code line or a math answer can be valid JSON; decoding it would invent two answers
    assert as_str_list('["alpha", "beta"]') == ['["alpha", "beta"]']
    assert as_str_list("[1, 2]") == ["[1, 2]"]
    assert as_str_list(np.array(["a", "b"])) == ["a", "b"]
    assert as_str_list([1, 2]) == ["1", "2"]
    assert as_str_list(None) == []


def test_normalise_rows_keeps_a_str_answer_whole() -> None:
    frame = pd.DataFrame({"context": ["c"], "answer": ["[1, 2]"], "max_new_tokens": [8]})
    rows = normalise_rows(frame, "toy")
    assert rows["answers"].tolist() == [["[1, 2]"]]


def test_a_csv_copy_decodes_its_json_list_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "_id": ["007"],
            "context": ["ctx"],
            "answers": [["[1, 2]", "x"]],
            "all_classes": [["A", "B"]],
            "answer": ["[3]"],  # a str column is not a list column: stays text
            "max_new_tokens": [8],
        }
    )
    write_raw_results(tmp_path / "toy.csv", frame)
    back = read_local(tmp_path / "toy.csv")
    assert back["answers"].tolist() == [["[1, 2]", "x"]]
    assert back["all_classes"].tolist() == [["A", "B"]]
    assert back["answer"].tolist() == ["[3]"]
    assert back["_id"].tolist() == ["007"]  # ids stay text: "007" is not the number 7
    rows = normalise_rows(back, "toy")
    assert rows["sample_id"].tolist() == ["007"]
