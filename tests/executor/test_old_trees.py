"""A result tree made by an earlier version resumes as complete: job fingerprints are stable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sparse_attention_hub.cli.main import main
from sparse_attention_hub.executor.experiment_file import load_spec
from sparse_attention_hub.executor.plan import plan
from sparse_attention_hub.sparse_attention import config_fingerprint

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tree_0.1.0"


def test_a_tree_made_at_version_0_1_0_resumes_complete(tmp_path: Path) -> None:
    """Fails when a job's fingerprint changes: version bumps aside, that re-runs every tree."""
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURE, tree, ignore=shutil.ignore_patterns("*.yaml"))
    jobs = plan(load_spec(FIXTURE / "experiment.yaml"), tree)
    assert {job.sparse_name: job.state.value for job in jobs} == {
        "dense": "complete",
        "streaming": "complete",
        "custom": "complete",
    }
    for job in jobs:  # dense is recorded as `dense`, a config by its fingerprint
        recorded = json.loads((job.result_dir / "manifest.json").read_text())
        assert recorded["inputs"]["sparse_config"] == config_fingerprint(job.sparse_config)

    experiment = str(FIXTURE / "experiment.yaml")
    assert main(["run", experiment, "--result-dir", str(tree), "--no-progress"]) == 0
    summary = json.loads((tree / "execution_summary.json").read_text())
    assert summary["counts"] == {"planned": 3, "ran": 0, "complete": 3}
