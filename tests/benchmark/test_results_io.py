"""Durable result files: atomic JSON, appended predictions (torn tails), round-trippable CSV."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from sparse_attention_hub.benchmark.results_io import (
    append_predictions,
    read_predictions,
    read_raw_results,
    write_json_atomic,
    write_raw_results,
)


def test_write_json_atomic_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.json"
    write_json_atomic(path, {"b": 1, "a": [1.5, None]})
    write_json_atomic(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_predictions_round_trip_and_later_lines_win(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    assert read_predictions(path) == {}
    first = {"subset": "s", "sample_id": "a", "prediction": "x"}
    append_predictions(path, [first, {"subset": "s", "sample_id": 7, "prediction": "é"}])
    append_predictions(
        path,
        [
            {"subset": "s", "sample_id": "a", "prediction": "y", "truncated_tokens": 3},
            {"subset": "t", "sample_id": "a", "prediction": "other subset"},
        ],
    )
    done = read_predictions(path)
    assert done == {
        ("s", "a"): {"subset": "s", "sample_id": "a", "prediction": "y", "truncated_tokens": 3},
        ("s", "7"): {"subset": "s", "sample_id": 7, "prediction": "é"},
        ("t", "a"): {"subset": "t", "sample_id": "a", "prediction": "other subset"},
    }
    assert path.read_text(encoding="utf-8").count("\n") == 4


def test_torn_last_line_is_cut_and_appends_stay_valid(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    append_predictions(path, [{"sample_id": "a", "prediction": "x"}])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"sample_id": "b", "predic')  # crash mid-write
    assert set(read_predictions(path)) == {("", "a")}  # a record without subset: key ""
    assert path.read_text(encoding="utf-8") == '{"sample_id": "a", "prediction": "x"}\n'
    append_predictions(path, [{"sample_id": "b", "prediction": "z"}])
    assert read_predictions(path)["", "b"]["prediction"] == "z"


def test_a_file_holding_only_a_torn_line_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"sample_id": "a"', encoding="utf-8")
    assert read_predictions(path) == {}
    assert path.read_bytes() == b""


def test_raw_results_round_trip_lists_text_and_scores(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "sample_id": ["1", "02", "3"],
            "answers": [["a", "b, c"], ['ü "q"'], []],
            "prediction": ["", "None", "NA\nline 2"],
            "answer_prefix": ["", "", ""],
            "score": [1.0, 0.25, float("nan")],
            "score_lenient": [float("nan")] * 3,
            "extracted": ["24", "", "7"],
            "max_new_tokens": [32, 32, 32],
        }
    )
    path = tmp_path / "raw_results.csv"
    write_raw_results(path, frame)
    back = read_raw_results(path)
    assert back["sample_id"].tolist() == ["1", "02", "3"]  # ids stay text ("02" keeps its zero)
    assert back["answers"].tolist() == [["a", "b, c"], ['ü "q"'], []]
    assert back["prediction"].tolist() == ["", "None", "NA\nline 2"]  # never parsed as missing
    assert back["answer_prefix"].tolist() == ["", "", ""]
    assert back["score"].tolist()[:2] == [1.0, 0.25] and math.isnan(back["score"].iloc[2])
    assert back["score_lenient"].isna().all()  # an all-blank score column is still numeric
    assert back["extracted"].tolist() == ["24", "", "7"]  # other columns: as read_csv infers
    assert back["max_new_tokens"].tolist() == [32, 32, 32]
