"""`build_report` on trees in every state: what the page says, what it writes, what it leaves."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.report import build_report, scan_tree

from .conftest import TreeBuilder


def snapshot(base: Path) -> dict[str, str]:
    """Every file outside report/ with the hash of its bytes (and its mode)."""
    return {
        str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
        for p in sorted(base.rglob("*"))
        if p.is_file() and p.relative_to(base).parts[0] != "report"
    }


def mixed_tree(tree: TreeBuilder) -> Path:
    tree.add("dense", "qa", score=80.0, density=1.0, timing={"decode_s": 2.0})
    tree.add("dense", "sum", score=40.0, density=1.0)
    tree.add("topk", "qa", score=60.0, density=0.25, output_error=0.1)
    tree.fail("topk", "sum")
    corrupt = tree.add("window", "qa", score=10.0, density=0.1)
    (corrupt / "metrics.json").write_text('{"overall": 10.0, "tas')  # a torn write
    tree.started("window", "sum", answers=2)  # interrupted: resumable
    return tree.base


def test_failed_and_corrupt_jobs_are_shown_with_their_reason(tree: TreeBuilder) -> None:
    base = mixed_tree(tree)
    states = {(c.sparse_config, c.subset): c.state for c in scan_tree(base)}
    assert states == {
        ("dense", "qa"): "complete",
        ("dense", "sum"): "complete",
        ("topk", "qa"): "complete",
        ("topk", "sum"): "failed",
        ("window", "qa"): "corrupt",
        ("window", "sum"): "partial",
    }
    page = build_report(base).read_text()
    assert re.search(
        r"class='failed' title='\[cuda_oom\] OutOfMemoryError: CUDA out of memory", page
    )
    assert re.search(r"class='corrupt' title='metrics.json does not parse \(JSONDecodeError", page)
    assert "class='partial' title='unfinished: 2 answer(s) saved; sah run resumes it'" in page
    markdown = (base / "report" / "report.md").read_text()
    assert "topk · mock_benchmark/sum: failed — [cuda_oom]" in markdown
    assert "window · mock_benchmark/qa: corrupt — metrics.json does not parse" in markdown
    assert "| 60.0 (75% kept · density 0.25) |" in markdown  # score, % of dense kept, density
    assert "**dense (baseline)**" in markdown


def test_building_changes_nothing_in_the_tree(tree: TreeBuilder) -> None:
    base = mixed_tree(tree)
    before = snapshot(base)
    build_report(base)
    build_report(base)  # a second build replaces the first in place
    assert snapshot(base) == before
    written = {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()} - set(before)
    assert all(name.startswith("report/") for name in written)
    assert {"report/index.html", "report/report.md", "report/data/scores.csv"} <= written


def test_page_is_self_contained_and_every_figure_has_its_csv(tree: TreeBuilder) -> None:
    base = mixed_tree(tree)
    page = build_report(base).read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    images = re.findall(r"src='data:image/png;base64,", page)
    csvs = re.findall(r"href='(data/[^']+\.csv)'", page)
    # score vs density, timing, and per model: kept heatmap and per-layer profile
    assert len(images) == len(csvs) == 4
    for csv in csvs:
        assert len(pd.read_csv(base / "report" / csv)) > 0
    layers = pd.read_csv(base / "report" / "data" / "layers_org__tiny.csv")
    assert set(layers["sparse_config"]) == {"dense", "topk"}  # complete jobs only
    assert layers.loc[layers["sparse_config"] == "topk", "output_error"].tolist() == pytest.approx(
        [0.1, 0.1]
    )
    timing = pd.read_csv(base / "report" / "data" / "timing.csv")
    assert timing["s_per_sample"].tolist() == [2.0, 2.0, 2.0]  # 6 s per job, 3 answers each
    assert timing["decode_s"].dropna().tolist() == [2.0]


def test_provenance_lists_versions_sources_kwargs_and_devices(tree: TreeBuilder) -> None:
    page = build_report(mixed_tree(tree)).read_text()
    for text in (
        "torch</td><td>2.13.0",
        "source=/models/tiny, source_kind=local, dtype=float32",
        "{&quot;max_new_tokens&quot;: 8}",
        "sink(sink_size=4)",
        "git commit</td><td>not recorded",
        "hardware (job devices)</td><td>cpu",
    ):
        assert text in page


def test_a_tree_without_its_baseline_still_builds(tree: TreeBuilder) -> None:
    tree.add("topk", "qa", score=60.0, density=0.25)
    page = build_report(tree.base).read_text()
    assert "60.0" in page and "% kept" not in page


def test_old_figures_of_an_earlier_build_are_removed(tree: TreeBuilder) -> None:
    base = mixed_tree(tree)
    build_report(base)
    leftover = base / "report" / "figures" / "gone.png"
    leftover.write_bytes(b"old")
    build_report(base)
    assert not leftover.exists()


def test_not_a_result_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no job dirs yet"):
        build_report(tmp_path)
    with pytest.raises(ConfigError, match="is not a directory"):
        build_report(tmp_path / "nope")


def test_report_dir_symlinked_elsewhere_is_refused(tree: TreeBuilder, tmp_path: Path) -> None:
    base = mixed_tree(tree)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (base / "report").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="is a symlink"):
        build_report(base)
    assert not any(elsewhere.iterdir())


def test_a_tree_with_nothing_complete_yet_still_builds(tree: TreeBuilder) -> None:
    tree.fail("topk", "qa")
    tree.started("dense", "qa")
    page = build_report(tree.base).read_text()
    assert "class='failed'" in page and "class='partial'" in page
    assert "data:image/png" not in page  # nothing to plot yet, and no empty plots
