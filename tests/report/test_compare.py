"""Two result dirs compared on the jobs they share."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sparse_attention_hub.cli.main import main
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.report import build_report

from .conftest import TreeBuilder


def test_sah_report_a_b_compares_the_shared_jobs(
    tree: TreeBuilder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree.add("dense", "qa", score=80.0)
    tree.add("topk", "qa", score=60.0, density=0.25)
    other = TreeBuilder(tmp_path / "other")
    other.add("dense", "qa", score=70.0)
    other.add("topk", "qa", score=66.0, density=0.25)
    other.add("quest", "qa", score=50.0, density=0.2)  # only in B: not compared
    assert main(["report", str(tree.base), str(other.base)]) == 0
    frame = pd.read_csv(tree.base / "report" / "data" / "compare.csv")
    assert list(frame["sparse_config"]) == ["dense", "topk"]
    assert list(frame["delta"]) == pytest.approx([-10.0, 6.0])
    page = (tree.base / "report" / "index.html").read_text()
    assert "Comparison" in page and "+6.0" in page
    assert not (other.base / "report").exists()  # B is only read
    assert main(["report", str(tree.base), "--compare", str(other.base)]) == 0
    assert main(["report", str(tree.base), str(other.base), "--compare", str(other.base)]) == 2
    assert "give the second result dir once" in capsys.readouterr().err


def test_dirs_without_a_shared_config_are_a_clear_error(tree: TreeBuilder, tmp_path: Path) -> None:
    tree.add("dense", "qa")
    other = TreeBuilder(tmp_path / "other")
    other.add("quest", "qa")
    with pytest.raises(
        ConfigError, match=r"no sparse config in common.*\['dense'\] vs \['quest'\]"
    ):
        build_report(tree.base, compare_with=other.base)
