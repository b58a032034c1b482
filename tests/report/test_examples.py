"""The examples: the GPU study plans as written; the Python-API script runs (on the tiny Llama)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparse_attention_hub.executor import plan, spec_from_dict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_longbench_gpu_study_plans(tmp_path: Path) -> None:
    spec = spec_from_dict(yaml.safe_load((EXAMPLES / "longbench_gpu.yaml").read_text()))
    jobs = plan(spec, tmp_path / "results")
    assert len(jobs) == 2 * 7 * 6  # models x sparse configs x LongBench subsets
    assert spec.execution.gpu_ids == [0, 1, 2, 3]
    assert not (tmp_path / "results").exists()  # planning writes nothing


@pytest.mark.e2e
@pytest.mark.slow  # minutes on a busy 2-core box; run with -m slow
def test_python_api_example_runs_and_reports(tmp_path: Path, tiny_llama_dir: Path) -> None:
    result_dir = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "python_api.py"),
            "--model",
            str(tiny_llama_dir),
            "--result-dir",
            str(result_dir),
            "--context-length",
            "256",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'complete': 6" in done.stderr
    assert (result_dir / "report" / "index.html").exists()
