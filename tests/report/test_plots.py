"""The kept-vs-density plot: one point per (model, sparse config) that has a baseline."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from sparse_attention_hub.cli.main import main
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.report import kept_table, plot_kept_vs_density

from .conftest import TreeBuilder

ROWS = [
    ("m", "dense", "ruler", "4096", "", "overall", 80.0),
    ("m", "dense", "ruler", "4096", "", "density/overall", 1.0),
    ("m", "topk", "ruler", "4096", "", "overall", 60.0),
    ("m", "topk", "ruler", "4096", "", "density/overall", 0.25),
    ("other", "topk", "ruler", "4096", "", "overall", 50.0),  # no baseline: not plotted
]
COLUMNS = ["model", "sparse_config", "benchmark", "subset", "task", "metric", "value"]


def test_plot_is_a_png_of_the_configs_with_a_baseline(tmp_path: Path) -> None:
    table = kept_table(pd.DataFrame(ROWS, columns=COLUMNS))
    out = plot_kept_vs_density(table, tmp_path / "plots" / "kept.png")
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 400


def test_nothing_to_plot_is_a_clear_error(tmp_path: Path) -> None:
    zero_baseline = [
        ("m", "dense", "ruler", "4096", "", "overall", 0.0),  # kept has no ratio anywhere
        ("m", "topk", "ruler", "4096", "", "overall", 10.0),
    ]
    table = kept_table(pd.DataFrame(zero_baseline, columns=COLUMNS))
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot_kept_vs_density(table, tmp_path / "kept.png")


def test_sah_report_writes_the_plot(tree: TreeBuilder, tmp_path: Path) -> None:
    tree.add("dense", "qa", score=80.0)
    tree.add("topk", "qa", score=60.0, density=0.25)
    assert main(["report", str(tree.base), "--plot", str(tmp_path / "kept.png")]) == 0
    assert (tmp_path / "kept.png").stat().st_size > 10_000
