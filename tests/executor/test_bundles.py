"""Bundles: forming the queue (pure), dispatching (fake backend), and real workers that die or
raise in the middle of a bundle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from tests.executor.test_scheduler import FakeBackend, run

from sparse_attention_hub.executor import BenchmarkExecutor, plan, spec_from_dict
from sparse_attention_hub.executor.bundles import (
    Bundle,
    bundle_key,
    form_groups,
    longest_first,
    split_for_workers,
    split_if_it_pays,
)
from sparse_attention_hub.executor.plan import Job
from sparse_attention_hub.executor.testing import answered, executions, experiment, read_events
from sparse_attention_hub.executor.worker import Worker

RULER = {"name": "ruler_synthetic", "subsets": ["niah_single_1"]}


def jobs_for(base: Path, **kwargs: Any) -> list[Job]:
    return plan(spec_from_dict(experiment(base, **kwargs)))


def ids(groups: list[list[Job]]) -> list[list[str]]:
    return [[job.sparse_name for job in group] for group in groups]


def test_jobs_differing_only_in_sparse_config_share_a_group(tmp_path: Path) -> None:
    jobs = jobs_for(tmp_path, models=["a", "b"], sparse=["x", "y", "z"])
    groups = form_groups(jobs, share_prefill=True)
    assert [[j.job_id for j in g] for g in groups] == [
        [f"{m}/{s}/mock_benchmark_reading_comprehension" for s in "xyz"] for m in "ab"
    ]
    assert len({bundle_key(j) for j in groups[0]}) == 1 and bundle_key(jobs[0]) != bundle_key(
        jobs[3]
    )
    assert ids(form_groups(jobs, share_prefill=False)) == [[s] for s in "xyzxyz"]
    bundle = Bundle(tuple(groups[0]), (1, 2, 1))
    assert pickle.loads(pickle.dumps(bundle)) == bundle  # what a backend carries to a process
    assert bundle.bundle_id == "a/x/mock_benchmark_reading_comprehension+2"


def test_groups_split_while_workers_would_idle_and_run_costliest_first(tmp_path: Path) -> None:
    jobs = jobs_for(tmp_path, sparse=["s1", "s2", "s3", "s4", "s5"])
    (group,) = form_groups(jobs, share_prefill=True)
    assert ids(split_for_workers([group], 1, {})) == [["s1", "s2", "s3", "s4", "s5"]]
    assert ids(split_for_workers([group], 2, {})) == [["s1", "s2", "s3"], ["s4", "s5"]]
    assert ids(split_for_workers([group], 9, {})) == [[f"s{i}"] for i in range(1, 6)]
    estimates = {job.job_id: float(i) for i, job in enumerate(jobs)}  # s5 costliest
    singles = form_groups(jobs, share_prefill=False)
    assert ids(longest_first(singles, estimates)) == [[f"s{i}"] for i in (5, 4, 3, 2, 1)]


def test_plan_estimates_order_the_queue_samples_times_context(tmp_path: Path) -> None:
    from sparse_attention_hub.executor.bundles import estimate

    small = {**RULER, "options": {"context_lengths": [512], "num_samples": 2}}
    big = {**RULER, "subsets": ["vt"], "options": {"context_lengths": [1024], "num_samples": 4}}
    jobs = jobs_for(tmp_path, benchmarks=[small, big])
    assert [estimate(j) for j in jobs] == [2 * 512.0, 4 * 1024.0]
    backend = FakeBackend(workers=1)
    run(tmp_path, jobs, backend)
    assert [j.split("/")[-1] for _, j, _ in backend.log] == [
        "ruler_synthetic_vt",
        "ruler_synthetic_niah_single_1",
    ]


def test_scheduler_sends_a_bundle_or_one_job_per_dispatch(tmp_path: Path) -> None:
    jobs = jobs_for(tmp_path, sparse=["x", "y", "z"])
    shared = FakeBackend(workers=1)
    outcome = run(tmp_path, jobs, shared)
    assert shared.bundles == [[j.job_id for j in jobs]]
    assert all(r.state == "complete" for r in outcome.records.values())
    events = read_events(tmp_path / "results")
    (dispatched,) = [e for e in events if e["event"] == "bundle_dispatched"]
    assert dispatched["job_ids"] == [j.job_id for j in jobs]
    unshared = FakeBackend(workers=1)
    run(tmp_path / "off", jobs, unshared, share_prefill=False)
    assert unshared.bundles == [[j.job_id] for j in jobs]
    split = FakeBackend(workers=2)
    run(tmp_path / "split", jobs, split)
    assert sorted(map(len, split.bundles)) == [1, 2]  # two workers, neither idle


def test_a_member_that_raises_fails_alone_and_keeps_its_answers(tmp_path: Path) -> None:
    faults = {"/bad/": {"action": "raise", "exc": "builtins.KeyError", "on_request": 2}}
    jobs = jobs_for(tmp_path, sparse=["good", "bad", "fine"], faults=faults)
    notes: list[tuple[str, dict[str, Any]]] = []
    Worker(0, "cpu", notify=lambda kind, payload: notes.append((kind, payload))).execute(
        Bundle(tuple(jobs), (1, 1, 1))
    )
    ended = {p["job_id"].split("/")[1]: k for k, p in notes if k in ("finished", "raised")}
    assert ended == {"good": "finished", "bad": "raised", "fine": "finished"}
    assert notes[0] == (
        "started",
        {"bundle_id": f"{jobs[0].job_id}+2", "job_ids": [j.job_id for j in jobs]},
    )
    assert answered(jobs[1].result_dir) == ["1", "2"]  # its first request, saved for resume
    assert not (jobs[1].result_dir / "manifest.json").exists()
    manifest = json.loads((jobs[0].result_dir / "manifest.json").read_text())
    assert manifest["bundle"] == [j.job_id for j in jobs]


def test_sigkill_mid_bundle_then_rerun_completes_every_member_answering_each_once(
    tmp_path: Path,
) -> None:
    """Killed in b's second request: a and b have answered 2 requests' worth, c one."""
    faults = {"/b/": {"action": "kill", "on_request": 2}}
    spec = spec_from_dict(experiment(tmp_path, sparse=["a", "b", "c"], faults=faults))
    first = BenchmarkExecutor(base_result_dir=tmp_path / "results", max_retries=0).run(spec)
    assert {r.state for r in first.records} == {"failed"}
    assert {r.category for r in first.records} == {"worker_died"}
    jobs = plan(spec)
    partial = {j.sparse_name: answered(j.result_dir) for j in jobs}
    assert partial == {"a": ["1", "2", "3", "4"], "b": ["1", "2"], "c": ["1", "2"]}

    again = BenchmarkExecutor(base_result_dir=tmp_path / "results", rerun_failed=True).run(spec)
    assert again.ok, again.to_dict()
    for job in jobs:
        assert answered(job.result_dir) == ["1", "2", "3", "4", "5"]  # never an answer twice
        lines = (job.result_dir / "predictions.jsonl").read_text().splitlines()
        assert [json.loads(line)["sample_id"] for line in lines] == ["1", "2", "3", "4", "5"]
        assert len(executions(job.result_dir)) == 2
    events = [e for e in read_events(tmp_path / "results") if e["run_id"] == again.run_id]
    (dispatched,) = [e for e in events if e["event"] == "bundle_dispatched"]
    assert dispatched["job_ids"] == [j.job_id for j in jobs]  # they ran as one bundle again


def test_a_group_is_halved_only_when_that_ends_the_run_earlier(tmp_path: Path) -> None:
    jobs = jobs_for(tmp_path, sparse=["s1", "s2", "s3", "s4"])
    units = {job.job_id: 1.0 for job in jobs}
    # the last group, three other workers busy for one more unit: taking all four jobs would
    # end the run at 4, halves at 3 (the second half goes to the first worker free)
    assert ids(split_if_it_pays(jobs, [], [1.0, 1.0, 1.0], units)) == [
        ["s1", "s2"],
        ["s3", "s4"],
    ]
    # early in a run (much work queued) or with no other worker, a split gains nothing
    assert ids(split_if_it_pays(jobs, [4.0] * 6, [0.0, 0.0, 0.0], units)) == [
        ["s1", "s2", "s3", "s4"]
    ]
    assert ids(split_if_it_pays(jobs, [], [], units)) == [["s1", "s2", "s3", "s4"]]
