"""A worker in-process: model kept across sparse configs, freed on switch, data loaded once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparse_attention_hub.executor import plan, spec_from_dict
from sparse_attention_hub.executor.bundles import Bundle
from sparse_attention_hub.executor.plan import Job
from sparse_attention_hub.executor.testing import FaultAdapter, experiment, loads_by_pid
from sparse_attention_hub.executor.worker import Worker


def execute(worker: Worker, job: Job, attempt: int = 1) -> dict[str, Any]:
    """Run `job` alone; its one ending message as `{"kind": ..., **payload}`."""
    ended: list[dict[str, Any]] = []
    notify = worker.notify

    def note(kind: str, payload: dict[str, Any]) -> None:
        if kind in ("finished", "raised"):
            ended.append({"kind": kind, **payload})
        notify(kind, payload)

    worker.notify = note
    try:
        worker.execute(Bundle((job,), (attempt,)))
    finally:
        worker.notify = notify
    assert len(ended) == 1 and ended[0]["job_id"] == job.job_id
    return ended[0]


def test_worker_swaps_sparse_configs_and_reloads_only_on_model_switch(tmp_path: Path) -> None:
    spec = spec_from_dict(experiment(tmp_path, models=["a", "b"], sparse=["x", "y"]))
    jobs = plan(spec)  # a/x, a/y, b/x, b/y
    notes: list[tuple[str, dict[str, Any]]] = []
    worker = Worker(0, "cpu", notify=lambda kind, payload: notes.append((kind, payload)))
    adapters = []
    for job in jobs:
        assert execute(worker, job)["kind"] == "finished"
        adapters.append(worker.adapter)
    assert (
        adapters[0] is adapters[1] and adapters[2] is adapters[3] and adapters[1] is not adapters[2]
    )
    assert [p["model"] for k, p in notes if k == "model_loaded"] == ["a", "b"]
    assert sum(len(v) for v in loads_by_pid(tmp_path).values()) == 2
    # mock data does not depend on the model: one load per subset for the whole worker
    assert len([k for k, _ in notes if k == "dataset_loaded"]) == 1
    assert all((job.result_dir / "manifest.json").exists() for job in jobs)


def test_rows_sized_by_the_model_load_once_per_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparse_attention_hub.benchmark.registry import get_benchmark_class

    monkeypatch.setattr(get_benchmark_class("mock_benchmark"), "sized_by_model", True)
    jobs = plan(spec_from_dict(experiment(tmp_path, models=["a", "b"], sparse=["x", "y"])))
    notes: list[str] = []
    worker = Worker(0, "cpu", notify=lambda kind, payload: notes.append(kind))
    assert [execute(worker, job)["kind"] for job in jobs] == ["finished"] * 4
    assert notes.count("dataset_loaded") == 2  # a/x and b/x load; a/y and b/y reuse


def test_worker_passes_each_jobs_sparse_config(tmp_path: Path) -> None:
    spec = spec_from_dict(
        {**experiment(tmp_path), "sparse_configs": {"dense": None, "streaming": "streaming"}}
    )
    worker = Worker(0, "cpu")
    seen = []
    for job in plan(spec):
        execute(worker, job)
        assert isinstance(worker.adapter, FaultAdapter)
        seen.append(worker.adapter.sparse_attention_config)
    assert seen[0] is None
    assert seen[1].fingerprint() == plan(spec)[1].inputs["sparse_config"]


def test_worker_survives_a_raising_job(tmp_path: Path) -> None:
    faults = {"/bad/": {"action": "raise", "exc": "builtins.KeyError", "times": 1}}
    jobs = plan(spec_from_dict(experiment(tmp_path, sparse=["bad", "good"], faults=faults)))
    worker = Worker(0, "cpu")
    first = execute(worker, jobs[0])
    assert first["kind"] == "raised" and first["failure"]["category"] == "other"
    assert first["failure"]["exc_type"] == "builtins.KeyError"
    assert execute(worker, jobs[1])["kind"] == "finished"
    assert execute(worker, jobs[0], attempt=2)["kind"] == "finished"  # the fault fired once


def test_model_on_another_device_is_refused_and_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from sparse_attention_hub.executor import worker as worker_module

    closed: list[str] = []

    class Stray(FaultAdapter):
        model = torch.nn.Linear(2, 2, device="meta")

        def close(self) -> None:
            closed.append(self.model_name)

    monkeypatch.setattr(
        worker_module, "load_factory", lambda path: lambda name, *rest: Stray(name, {}, "cpu")
    )
    (job,) = plan(spec_from_dict(experiment(tmp_path)))
    worker = Worker(0, "cpu")
    outcome = execute(worker, job)
    assert outcome["kind"] == "raised" and outcome["failure"]["category"] == "model_load"
    assert "meta" in outcome["failure"]["message"]
    assert closed == ["m1"] and worker.adapter is None


def test_each_subset_is_read_once_per_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted at the benchmark's own `load_subset`, not at the worker's notification."""
    from sparse_attention_hub.benchmark.registry import get_benchmark_class

    cls = get_benchmark_class("mock_benchmark")
    reads: list[str] = []
    original = cls.load_subset

    def counting(self: Any, subset: str) -> Any:
        reads.append(subset)
        return original(self, subset)

    monkeypatch.setattr(cls, "load_subset", counting)
    jobs = plan(spec_from_dict(experiment(tmp_path, models=["a", "b"], sparse=["x", "y"])))
    worker = Worker(0, "cpu")
    assert [execute(worker, job)["kind"] for job in jobs] == ["finished"] * 4
    assert reads == ["reading_comprehension"]
