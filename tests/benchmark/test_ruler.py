"""RULER: loading per length, post-processed string matching, and by-length / task aggregation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark import create_benchmark_instance
from sparse_attention_hub.benchmark.results_io import read_predictions, read_raw_results
from sparse_attention_hub.benchmark.ruler import TASKS, Ruler
from sparse_attention_hub.errors import DatasetLoadError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ruler"


def _score(task: str, predictions: list[str], answers: list[list[str]]) -> list[float]:
    rows = pd.DataFrame({"prediction": predictions, "answers": answers})
    return Ruler().score_task(task, rows)["score"].tolist()


def test_string_match_all_counts_found_references() -> None:
    refs = [["QWERT", "ASDFG", "ZXCVB"]]
    assert _score("vt", ["qwert asdfg"], refs) == [pytest.approx(2 / 3)]
    assert _score("vt", ["QWERT ASDFG ZXCVB"], refs) == [1.0]
    assert _score("vt", [""], refs) == [0.0]


def test_string_match_part_takes_any_reference() -> None:
    refs = [["Vesta", "the Vesta river"]]
    assert _score("qa_1", ["VESTA."], refs) == [1.0]
    assert _score("qa_2", ["the Orlen"], refs) == [0.0]


def test_control_characters_become_newlines_on_a_copy() -> None:
    # a tab (\x09) only matches the reference's newline after post-processing
    assert _score("niah_single_1", ["\x00 key\tvalue \x1f"], [["key\nvalue"]]) == [1.0]
    rows = pd.DataFrame({"prediction": ["a\x07b"], "answers": [["a\nb"]]})
    Ruler().score_task("cwe", rows)
    assert rows.at[0, "prediction"] == "a\x07b"  # the caller's text is untouched


def test_load_adds_context_length_and_list_answers(tmp_path: Path) -> None:
    rows = Ruler(["4096"], data_path=FIXTURES).load_subset("4096")
    assert sorted(rows["task"]) == sorted(TASKS)
    assert set(rows["context_length"]) == {4096}
    assert rows.set_index("task").at["vt", "answers"] == ["QWERT", "ASDFG", "ZXCVB"]
    # parquet gives numpy arrays for list columns: they must become list[str]
    pd.read_json(FIXTURES / "8192.jsonl", lines=True).to_parquet(tmp_path / "8192.parquet")
    parquet_rows = Ruler(["8192"], data_path=tmp_path).load_subset("8192")
    assert all(type(a) is list for a in parquet_rows["answers"])
    assert parquet_rows.at[0, "answers"] == ["5930148"]


def test_missing_length_and_unknown_task_are_load_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetLoadError, match="16384"):
        Ruler(["16384"], data_path=FIXTURES).load_samples()
    row = {
        "context": "c",
        "question": "q",
        "answer_prefix": "",
        "answer": ["x"],
        "task": "qa_3",
        "max_new_tokens": 32,
    }
    (tmp_path / "4096.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DatasetLoadError, match="qa_3"):
        Ruler(["4096"], data_path=tmp_path).load_samples()


def test_empty_scores_aggregate_to_null() -> None:
    empty = pd.DataFrame({"task": [], "context_length": [], "score": []})
    metrics = Ruler().aggregate(empty)
    assert metrics["overall"] is None
    assert metrics["tasks"] == {}
    assert metrics["buckets"]["length_mean"] == {}


# per-task answers at 4096 and the per-sample score each one earns
ANSWERS_4096 = {
    "niah_single_1": ("4821937", 1.0),
    "niah_single_2": ("1234567", 0.0),
    "niah_single_3": ("A3C1E0F2-6B7D-4E11-9A3C-55D2F1B0C8E4", 1.0),  # case-insensitive
    "niah_multikey_1": ("\x00 1290364\x1f", 1.0),
    "niah_multikey_2": ("", 0.0),
    "niah_multikey_3": ("e8d4c3b2-7a6f-4c1e-b2d9-0f1e2d3c4b5a", 1.0),
    "niah_multivalue": ("3316072 and more", 0.5),
    "niah_multiquery": ("2222222, 1111111", 1.0),
    "vt": ("QWERT ASDFG", 2 / 3),
    "cwe": ("1. apple 2. river", 1.0),
    "fwe": ("qzmvta lrpoxw", 2 / 3),
    "qa_1": ("the vesta river", 1.0),
    "qa_2": ("four", 0.0),
}
ANSWERS_8192 = {"niah_single_1": ("5930148", 1.0), "vt": ("", 0.0), "qa_1": ("1968", 1.0)}


def test_ruler_end_to_end(tmp_path: Path) -> None:
    bench = create_benchmark_instance("ruler", ["4096", "8192"], data_path=FIXTURES)
    samples = bench.load_samples()
    script = {}
    for question, task, length in zip(
        samples["question"], samples["task"], samples["context_length"], strict=True
    ):
        table = ANSWERS_4096 if length == 4096 else ANSWERS_8192
        script[question] = table[task][0]
    adapter = ScriptedAdapter(answers=script)
    metrics = bench.run_benchmark(adapter, tmp_path)

    mean_4096 = 100 * sum(s for _, s in ANSWERS_4096.values()) / 13
    mean_8192 = 100 * 2 / 3
    buckets = metrics["buckets"]
    assert buckets["length_mean"]["4096"] == pytest.approx(mean_4096)
    assert buckets["length_mean"]["8192"] == pytest.approx(mean_8192)
    for task, (_, score) in ANSWERS_4096.items():
        assert buckets["by_length"]["4096"][task] == pytest.approx(100 * score)
    assert set(buckets["by_length"]["8192"]) == {"niah_single_1", "vt", "qa_1"}
    assert buckets["by_length_n"]["8192"]["vt"] == 1
    assert metrics["overall"] == pytest.approx((mean_4096 + mean_8192) / 2)
    assert metrics["tasks"]["vt"]["score"] == pytest.approx((100 * 2 / 3 + 0) / 2)
    assert metrics["tasks"]["niah_single_2"]["score"] == 0.0
    assert metrics["tasks"]["qa_1"]["n_scored"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["overall"] == pytest.approx(
        metrics["overall"]
    )

    raw = read_raw_results(tmp_path / "raw_results.csv")
    assert len(raw) == 16
    assert sorted(set(raw["context_length"])) == [4096, 8192]
    saved = read_predictions(tmp_path / "predictions.jsonl")
    multikey = samples.loc[(samples["task"] == "niah_multikey_1"), "sample_id"].iloc[0]
    assert saved["4096", multikey]["prediction"] == "\x00 1290364\x1f"  # saved as generated
    caps = {
        call["answer_prefix"][:30]: call["generation_kwargs"]["max_new_tokens"]
        for call in adapter.calls
    }
    assert caps["Answer: According to the chain"] == 30  # vt
    assert caps["Answer: According to the coded"] == 50  # fwe
    assert bench.subset_metrics()["4096"].startswith("string_match")
