"""The kept-vs-dense table built from a tidy results.csv."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from sparse_attention_hub.cli.main import main
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.report import kept_table, pivot_scores

from .conftest import TreeBuilder

ROWS = [
    # model, sparse config, benchmark, subset, task, metric, value
    ("m", "dense", "ruler", "4096", "", "overall", 80.0),
    ("m", "dense", "ruler", "4096", "niah", "score", 90.0),  # a task row: not the job's overall
    ("m", "dense", "ruler", "4096", "", "density/overall", 1.0),
    ("m", "dense", "mock", "qa", "", "overall", 0.0),
    ("m", "topk", "ruler", "4096", "", "overall", 60.0),
    ("m", "topk", "ruler", "4096", "", "density/overall", 0.25),
    ("m", "topk", "mock", "qa", "", "overall", 20.0),
    ("other", "topk", "ruler", "4096", "", "overall", 50.0),  # no dense run for this model
]


def write_results(directory: Path) -> Path:
    frame = pd.DataFrame(
        ROWS, columns=["model", "sparse_config", "benchmark", "subset", "task", "metric", "value"]
    )
    frame.to_csv(directory / "results.csv", index=False)
    return directory


def row(table: pd.DataFrame, model: str, config: str, subset: str) -> pd.Series:
    match = table[
        (table["model"] == model) & (table["sparse_config"] == config) & (table["subset"] == subset)
    ]
    assert len(match) == 1
    return match.iloc[0]


def test_kept_is_the_share_of_the_dense_score_on_the_same_model_and_subset(tmp_path: Path) -> None:
    table = kept_table(write_results(tmp_path))
    assert len(table) == 5
    topk = row(table, "m", "topk", "4096")
    assert topk["score"] == 60.0 and topk["kept"] == pytest.approx(75.0)
    assert topk["density"] == pytest.approx(0.25)
    assert row(table, "m", "dense", "4096")["kept"] == pytest.approx(100.0)
    assert math.isnan(row(table, "m", "topk", "qa")["kept"])  # dense scored 0: no ratio
    assert math.isnan(row(table, "other", "topk", "4096")["kept"])  # no baseline at all


def test_pivot_has_one_column_per_subset_and_a_mean(tmp_path: Path) -> None:
    wide = pivot_scores(kept_table(write_results(tmp_path)))
    assert list(wide.columns) == ["mock/qa", "ruler/4096", "mean"]
    assert wide.at[("m", "topk"), "mean"] == pytest.approx(40.0)
    assert wide.at[("m", "dense"), "mock/qa"] == 0.0
    with pytest.raises(ConfigError, match="unknown value column 'nope'"):
        pivot_scores(kept_table(tmp_path), "nope")


def test_missing_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        kept_table(tmp_path)


def test_sah_report_prints_scores_and_kept_share(
    tree: TreeBuilder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree.add("dense", "qa", score=80.0)
    tree.add("topk", "qa", score=60.0, density=0.25)
    tree.fail("topk", "sum")
    assert main(["report", str(tree.base), "--csv", str(tmp_path / "kept.csv"), "--open"]) == 0
    out = capsys.readouterr().out
    assert "60.00 (75%)" in out and "80.00 (100%)" in out
    assert "failed org/tiny/topk/mock_benchmark/sum: [cuda_oom]" in out
    index = tree.base / "report" / "index.html"
    assert f"report: {index}" in out and index.resolve().as_uri() in out
    assert len(pd.read_csv(tmp_path / "kept.csv")) == 2


def test_unknown_baseline_is_an_error_not_a_blank_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"baseline 'dnese' .* available: \['dense', 'topk'\]"):
        kept_table(write_results(tmp_path), baseline="dnese")
