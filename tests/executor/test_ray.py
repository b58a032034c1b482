"""The Ray backend on a local Ray instance (one per module), against the local backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_support import (
    RAY_INIT,
    kill_mid_job,
    local_reference,
    predictions,
    quickstart_matrix,
    run_matrix,
    saved_ids,
    scores,
    sigkill,
)

from sparse_attention_hub.cli.main import main as sah
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor import BenchmarkExecutor, ExperimentSpec, spec_from_dict
from sparse_attention_hub.executor.testing import answered, executions, experiment, read_events


# ----- no Ray session needed --------------------------------------------------------------------
def test_without_ray_the_plan_names_the_extra(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    spec = spec_from_dict(experiment(base))
    with pytest.raises(ConfigError, match=r"sparse-attention-hub\[ray\]"):
        BenchmarkExecutor(backend="ray", base_result_dir=base / "results").plan(spec)
    assert not (base / "results").exists()


def test_gpu_ids_with_ray_say_what_to_use_instead(base: Path) -> None:
    with pytest.raises(ConfigError, match=r"gpu_ids.*runs_per_gpu"):
        BenchmarkExecutor(gpu_ids=[0], backend="ray")
    data = experiment(base, execution={"backend": "ray", "gpu_ids": [0, 1]})
    with pytest.raises(ConfigError, match=r"execution: .*gpu_ids \[0, 1\]"):
        spec_from_dict(data)
    with pytest.raises(ConfigError, match="only used with backend 'ray'"):
        BenchmarkExecutor(ray_address="auto")


def test_cli_backend_and_address_reach_the_executor(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    path = base / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment(base, sparse=["a", "b"])))
    code = sah(["run", str(path), "--dry-run", "--backend", "ray", "--ray-address", "auto"])
    assert code == 0 and "would run 2" in capsys.readouterr().out  # planned; no cluster touched
    assert sah(["run", str(path), "--dry-run", "--ray-address", "auto"]) == 2  # local: refused


@pytest.mark.e2e
def test_sah_run_backend_ray_starts_its_own_ray_instance(base: Path) -> None:
    """No address and no Ray session: `sah run --backend ray` starts one for the run and ends it."""
    import yaml

    pytest.importorskip("ray")
    path = base / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment(base, sparse=["a", "b"])))
    command = [sys.executable, "-m", "sparse_attention_hub.cli.main", "run", str(path)]
    done = subprocess.run(
        [*command, "--backend", "ray", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 complete" in done.stdout
    events = read_events(base / "results")
    assert [e["backend"] for e in events if e["event"] == "run_started"] == ["ray"]


# ----- on a local Ray instance -------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, **RAY_INIT)
    yield
    ray.shutdown()


@pytest.mark.e2e
def test_quickstart_matrix_matches_the_local_backend(
    ray_session: None,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_llama_dir: Path,
) -> None:
    session_tmp = tmp_path_factory.getbasetemp()
    local = local_reference(session_tmp, tiny_llama_dir)
    on_ray = run_matrix(
        quickstart_matrix(session_tmp, tiny_llama_dir, tmp_path / "ray"),
        max_concurrent_runs=2,
        backend="ray",
    )
    assert local.ok and on_ray.ok and len(on_ray.completed) == 9
    assert predictions(on_ray) == predictions(local)
    for record in on_ray.completed:  # the driver wrote every file; the manifest names the actor
        job_dir = on_ray.result_dir / record.job_id
        assert {"config.json", "metrics.json", "raw_results.csv"} <= {
            p.name for p in job_dir.iterdir()
        }
        assert json.loads((job_dir / "manifest.json").read_text())["device"].startswith("ray:")
    assert scores(on_ray).equals(scores(local))


def _two_jobs(base: Path) -> tuple[ExperimentSpec, str]:
    """Job `a` takes 1.5 s per request: time to act between its first answer and its last."""
    faults = {"/a/": {"delay_s": 1.5}}
    data = experiment(base, sparse=["a", "b"], faults=faults, execution={"backend": "ray"})
    return spec_from_dict(data), "m1/a/mock_benchmark_reading_comprehension"


def test_sigkilled_actor_job_is_retried_elsewhere_and_no_sample_is_answered_twice(
    ray_session: None, base: Path
) -> None:
    spec, victim = _two_jobs(base)
    result_dir = base / "results"
    before_kill: list[str] = []
    killer = kill_mid_job(result_dir, victim, sigkill, before_kill)
    results = BenchmarkExecutor.from_spec(spec, max_concurrent_runs=2).run(spec)
    killer.join(5)
    assert results.ok, results.to_dict()
    record = next(r for r in results.records if r.job_id == victim)
    assert record.attempts == 2
    pids = executions(result_dir / victim)
    assert len(pids) == 2 and pids[0] != pids[1]  # the retry ran in another actor
    # what was saved before the kill reached the driver and was never generated again
    assert before_kill and all(answered(result_dir / victim).count(i) == 1 for i in before_kill)
    assert sorted(saved_ids(result_dir / victim)) == ["1", "2", "3", "4", "5"]
    events = read_events(result_dir)
    assert {e["backend"] for e in events if e["event"] == "run_started"} == {"ray"}
    retried = [e for e in events if e["event"] == "job_retried"]
    assert [(e["job_id"], e["category"]) for e in retried] == [(victim, "worker_died")]
    assert retried[0]["message"].startswith("worker process is gone (")  # Ray's error type


def test_interrupt_leaves_a_resumable_tree(ray_session: None, base: Path) -> None:
    """SIGTERM (handled like Ctrl-C) once one answer is saved; the rerun answers the rest."""
    spec, victim = _two_jobs(base)
    result_dir = base / "results"
    before: list[str] = []
    killer = kill_mid_job(
        result_dir, victim, lambda _: os.kill(os.getpid(), signal.SIGTERM), before
    )
    first = BenchmarkExecutor.from_spec(spec, max_concurrent_runs=2).run(spec)
    killer.join(5)
    assert first.interrupted and before
    second = BenchmarkExecutor.from_spec(spec, max_concurrent_runs=2).run(spec)
    assert second.ok
    assert all(answered(result_dir / victim).count(i) == 1 for i in before)
    for record in second.records:
        assert sorted(saved_ids(result_dir / record.job_id)) == ["1", "2", "3", "4", "5"]


def test_job_past_its_timeout_loses_its_actor_and_is_recorded(
    ray_session: None, base: Path
) -> None:
    data = experiment(
        base,
        sparse=["ok", "hangs"],
        faults={"/hangs/": {"action": "hang", "times": 5}},
        execution={"backend": "ray", "job_timeout_s": 2.0, "max_retries": 0},
    )
    spec = spec_from_dict(data)
    results = BenchmarkExecutor.from_spec(spec, max_concurrent_runs=2).run(spec)
    by_name = {r.sparse_config: r for r in results.records}
    assert by_name["ok"].state == "complete"
    assert by_name["hangs"].state == "failed" and by_name["hangs"].category == "timeout"
    failure = json.loads(
        (results.result_dir / by_name["hangs"].job_id / "failure.json").read_text()
    )
    assert failure["exc_type"] == "JobTimeout"
