"""Job states read from the tree alone: stale (last run says so), running (status.json says so)."""

from __future__ import annotations

import json
from pathlib import Path

from sparse_attention_hub.report import scan_tree
from sparse_attention_hub.report.tree import tidy_frame

from .conftest import TreeBuilder


def test_stale_and_running_come_from_the_runs_own_records(tree: TreeBuilder) -> None:
    tree.add("dense", "qa", score=80.0)
    tree.add("topk", "qa", score=60.0)
    tree.started("topk", "sum", answers=2)
    summary = {
        "jobs": [
            {
                "job_id": "org__tiny/topk/mock_benchmark_qa",
                "state": "stale",
                "error": "changed: generation_kwargs",
            }
        ]
    }
    (tree.base / "execution_summary.json").write_text(json.dumps(summary))
    status = {
        "interrupted": False,
        "updated_at": "T",
        "workers": [{"worker": 0, "job": "org__tiny/topk/mock_benchmark_sum"}],
    }
    (tree.base / "status.json").write_text(json.dumps(status))
    cells = {(c.sparse_config, c.subset): c for c in scan_tree(tree.base)}
    assert cells[("topk", "qa")].state == "stale"
    assert "changed: generation_kwargs" in cells[("topk", "qa")].reason
    assert cells[("topk", "sum")].state == "running"
    assert cells[("topk", "sum")].reason.endswith("2 answer(s) saved")
    assert {c.model for c in cells.values()} == {"org/tiny"}  # the recorded name, not the dir
    frame = tidy_frame(list(cells.values()))
    assert set(frame["sparse_config"]) == {"dense"}  # only complete jobs have rows


def test_symlinked_and_report_dirs_are_not_jobs(tree: TreeBuilder, tmp_path: Path) -> None:
    tree.add("dense", "qa")
    outside = TreeBuilder(tmp_path / "outside")
    outside.add("dense", "sum")
    (tree.base / "org__tiny" / "linked").symlink_to(outside.base / "org__tiny" / "dense")
    (tree.base / "report" / "x" / "y").mkdir(parents=True)
    (tree.base / "report" / "x" / "y" / "manifest.json").write_text("{}")
    assert [c.job_id for c in scan_tree(tree.base)] == ["org/tiny/dense/mock_benchmark/qa"]


def test_failure_file_that_does_not_parse_is_corrupt(tree: TreeBuilder) -> None:
    job = tree.fail("topk", "qa")
    (job / "failure.json").write_text("{")
    (cell,) = scan_tree(tree.base)
    assert cell.state == "corrupt" and "failure.json does not parse" in cell.reason
    assert (cell.benchmark, cell.subset) == ("mock_benchmark", "qa")
