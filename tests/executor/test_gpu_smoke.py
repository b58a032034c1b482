"""benchmarks/gpu_smoke.py writes experiments the executor accepts (checked here, on CPU)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
from tests.scripts import load_benchmark_script

from sparse_attention_hub.executor import load_spec, plan


def load_script() -> ModuleType:
    return load_benchmark_script("gpu_smoke")


def test_smoke_experiments_plan_on_a_one_gpu_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smoke = load_script()
    gpu = SimpleNamespace(total_memory=140 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: gpu)
    smoke.prepare(tmp_path, [0])

    pinning = load_spec(tmp_path / "pinning.yaml")
    assert pinning.execution.gpu_ids == [0] and pinning.execution.max_concurrent_runs == 2
    assert pinning.execution.gpu_memory_fraction == 0.4
    jobs = plan(pinning, gpu_ids=[0], device_count=1)
    assert [j.sparse_name for j in jobs] == ["oom", "s0", "s1", "s2", "s3"]
    rule = next(iter(load_faults(pinning).values()))
    assert rule["action"] == "allocate" and rule["gb"] == pytest.approx(84.0)  # > 40% of 140

    real = load_spec(tmp_path / "real.yaml")
    jobs = plan(real, gpu_ids=[0], device_count=1)
    assert [(j.model, j.sparse_name) for j in jobs] == [
        ("smollm2-135m-instruct", "dense"),
        ("smollm2-135m-instruct", "streaming"),
    ]
    for name, share in (("bundled", True), ("separate", False)):
        shared = load_spec(tmp_path / f"{name}.yaml")
        assert shared.execution.share_prefill is share
        assert shared.execution.max_concurrent_runs == 1
        names = [j.sparse_name for j in plan(shared, gpu_ids=[0], device_count=1)]
        assert names == ["dense", "streaming", "oracle_topk"]


def load_faults(spec: object) -> dict[str, dict[str, object]]:
    import json

    path = Path(spec.adapter.model_kwargs["faults"])  # type: ignore[attr-defined]
    return dict(json.loads(path.read_text()))
