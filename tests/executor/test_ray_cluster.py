"""The Ray backend on a two-node cluster built on this machine (`ray.cluster_utils.Cluster`).

The head node has no CPU for actors, so each slot's actor lives on one of the two worker nodes;
removing a node mid-job must cost that job one attempt, never the run or a saved answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
)

from sparse_attention_hub.executor import BenchmarkExecutor, spec_from_dict
from sparse_attention_hub.executor.testing import answered, executions, experiment, read_events

STORE = RAY_INIT["object_store_memory"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": STORE},
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=STORE)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def node_of(cluster: Any, pid: int) -> Any:
    """The cluster node whose raylet started process `pid` (an actor descends from it)."""
    raylets = {
        p.process.pid: node
        for node in cluster.list_all_nodes()
        for p in node.all_processes.get("raylet", [])
    }
    ancestor = pid
    while ancestor > 1:
        if ancestor in raylets:
            return raylets[ancestor]
        stat = Path(f"/proc/{ancestor}/stat").read_text()
        ancestor = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state
    raise LookupError(f"no node started process {pid}")


@pytest.mark.e2e
def test_quickstart_matrix_on_two_nodes_matches_the_local_backend(
    cluster: Any,
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
    assert scores(on_ray).equals(scores(local))
    devices = {  # ray:<ip>:<node id>:cpu, as each job's manifest records it
        json.loads((on_ray.result_dir / r.job_id / "manifest.json").read_text())["device"]
        for r in on_ray.completed
    }
    assert len(devices) == 2  # both nodes ran jobs


def test_node_removed_mid_job_the_job_completes_on_the_other_node(cluster: Any, base: Path) -> None:
    faults = {"/a/": {"delay_s": 1.5}}  # time to act between its first answer and its last
    data = experiment(base, sparse=["a", "b"], faults=faults, execution={"backend": "ray"})
    victim = "m1/a/mock_benchmark_reading_comprehension"
    result_dir = base / "results"
    removed: list[Any] = []

    def remove_node(pid: int) -> None:
        removed.append(node_of(cluster, pid))
        cluster.remove_node(removed[0])

    before: list[str] = []
    killer = kill_mid_job(result_dir, victim, remove_node, before)
    spec = spec_from_dict(data)
    results = BenchmarkExecutor.from_spec(spec, max_concurrent_runs=2).run(spec)
    killer.join(5)
    assert results.ok, results.to_dict()
    assert next(r for r in results.records if r.job_id == victim).attempts == 2
    first, retry = executions(result_dir / victim)
    assert removed and first != retry
    assert all(answered(result_dir / victim).count(i) == 1 for i in before) and before
    assert sorted(saved_ids(result_dir / victim)) == ["1", "2", "3", "4", "5"]
    events = read_events(result_dir)
    assert {e["backend"] for e in events if e["event"] == "run_started"} == {"ray"}
    assert len([e for e in events if e["event"] == "worker_died"]) == 1
