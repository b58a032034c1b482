"""A worker in-process: model kept across sparse configs, freed on switch, data loaded once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparse_attention_hub.executor import plan, spec_from_dict
from sparse_attention_hub.executor.testing import FaultAdapter, experiment, loads_by_pid
from sparse_attention_hub.executor.worker import Worker


def test_worker_swaps_sparse_configs_and_reloads_only_on_model_switch(tmp_path: Path) -> None:
    spec = spec_from_dict(experiment(tmp_path, models=["a", "b"], sparse=["x", "y"]))
    jobs = plan(spec)  # a/x, a/y, b/x, b/y
    notes: list[tuple[str, dict[str, Any]]] = []
    worker = Worker(0, "cpu", notify=lambda kind, payload: notes.append((kind, payload)))
    adapters = []
    for job in jobs:
        assert worker.execute(job, attempt=1)["kind"] == "finished"
        adapters.append(worker.adapter)
    assert (
        adapters[0] is adapters[1] and adapters[2] is adapters[3] and adapters[1] is not adapters[2]
    )
    assert [p["model"] for k, p in notes if k == "model_loaded"] == ["a", "b"]
    assert sum(len(v) for v in loads_by_pid(tmp_path).values()) == 2
    # mock data does not depend on the model: one load per subset for the whole worker
    assert len([k for k, _ in notes if k == "dataset_loaded"]) == 1
    assert all((job.result_dir / "manifest.json").exists() for job in jobs)


def test_worker_passes_each_jobs_sparse_config(tmp_path: Path) -> None:
    spec = spec_from_dict(
        {**experiment(tmp_path), "sparse_configs": {"dense": None, "streaming": "streaming"}}
    )
    worker = Worker(0, "cpu")
    seen = []
    for job in plan(spec):
        worker.execute(job, attempt=1)
        assert isinstance(worker.adapter, FaultAdapter)
        seen.append(worker.adapter.sparse_attention_config)
    assert seen[0] is None
    assert seen[1].fingerprint() == plan(spec)[1].inputs["sparse_config"]


def test_worker_survives_a_raising_job(tmp_path: Path) -> None:
    faults = {"/bad/": {"action": "raise", "exc": "builtins.KeyError", "times": 1}}
    jobs = plan(spec_from_dict(experiment(tmp_path, sparse=["bad", "good"], faults=faults)))
    worker = Worker(0, "cpu")
    first = worker.execute(jobs[0], attempt=1)
    assert first["kind"] == "raised" and first["failure"]["category"] == "other"
    assert first["failure"]["exc_type"] == "builtins.KeyError"
    assert worker.execute(jobs[1], attempt=1)["kind"] == "finished"
    assert worker.execute(jobs[0], attempt=2)["kind"] == "finished"  # the fault fired once
