"""`sah run` end to end on the tiny random Llama: real adapter, real benchmarks, 2 workers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sparse_attention_hub.executor import plan, spec_from_dict
from sparse_attention_hub.executor.testing import read_events


@pytest.mark.e2e
def test_sah_run_tiny_llama_two_workers(tmp_path: Path, tiny_llama_dir: Path) -> None:
    experiment = {
        "models": [str(tiny_llama_dir)],
        "sparse_configs": {"dense": None, "streaming": "streaming"},
        "benchmarks": [
            {"name": "mock_benchmark"},
            {
                "name": "ruler_synthetic",
                "subsets": ["niah_single_1"],
                "options": {
                    "context_lengths": [256],
                    "num_samples": 1,
                    "cache_dir": str(tmp_path / "ruler_cache"),
                },
            },
        ],
        "generation_kwargs": {"max_new_tokens": 4},
        "result_dir": str(tmp_path / "results"),
        "execution": {"max_concurrent_runs": 2},
    }
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(experiment))
    done = subprocess.run(
        [sys.executable, "-m", "sparse_attention_hub.cli.main", "run", str(exp), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = plan(spec_from_dict(experiment))
    assert len(jobs) == 4 and all(j.state.value == "complete" for j in jobs)
    for job in jobs:
        manifest = json.loads((job.result_dir / "manifest.json").read_text())
        assert manifest["device"] == "cpu" and manifest["fingerprint"] == job.fingerprint
        config = json.loads((job.result_dir / "config.json").read_text())
        assert config["job"]["sparse_config_name"] == job.sparse_name
    results = pd.read_csv(tmp_path / "results" / "results.csv", keep_default_na=False)
    assert set(results["sparse_config"]) == {"dense", "streaming"}
    assert set(results["benchmark"]) == {"mock_benchmark", "ruler_synthetic"}
    events = read_events(tmp_path / "results")
    loads = Counter(e["pid"] for e in events if e["event"] == "model_loaded")
    served = {e["pid"] for e in events if e["event"] == "job_started"}
    assert set(loads) == served and set(loads.values()) == {1}  # one model: one load per worker
