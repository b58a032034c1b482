"""How well the executor fills its slots, and what keeping the model loaded saves.

    python benchmarks/scheduler.py             # 48 scripted jobs of mixed durations on 4 slots,
                                               # one job per dispatch, then as bundles
    python benchmarks/scheduler.py --backend ray   # the same on local workers, then on Ray
                                               # actors (a local Ray instance), side by side
    python benchmarks/scheduler.py --smollm2   # also: 1 model x 4 sparse configs x 3 subsets on
                                               # SmolLM2, against reloading the model per job

Part 1 prints the makespan (the parent's first `job_started` -> its last `job_finished`) against
three lower bounds, each max(longest job, work / slots):
- the ideal: work = the scripted work alone (each request sleeps seconds_per_token x its context
  words, exactly the plan's estimate), as if jobs were divisible at no cost. It holds for any
  schedule, with or without bundles (bundles may split), so it is fair to both modes; everything
  else the executor spends counts as lost: in-job overhead (data, scoring, files, fsyncs),
  dispatch round trips, and slots whose worker became ready after the first job started;
- with worker start-up: work also counts each slot's ready time after the first start (start-up
  is spent once per run, not per job: what the scheduler and the jobs lose without it);
- against measured dispatch lengths (in-job overhead counted as work) and ready times: what
  packing alone loses.
Then the per-job dispatch overhead: the gap on a worker between one job finishing and its next
job starting (parent <-> worker round trip), and the time a job spends beyond its scripted work.
Last, the in-job path alone: the same jobs without scripted work, one at a time on one Worker in
the benchmark's own process, wall and CPU per job (what the figures above lose per job, measured
where the machine's load moves it least).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sparse_attention_hub.executor import BenchmarkExecutor, plan, spec_from_dict
from sparse_attention_hub.executor.bundles import Bundle
from sparse_attention_hub.executor.testing import experiment, read_events
from sparse_attention_hub.executor.worker import Worker

FACTORY = "_scripted_work:scripted_work_adapter"


def scripted_experiment(
    base: Path, jobs: int, seed: int, share_prefill: bool, seconds_per_token: float = 0.001
) -> tuple[Any, dict[str, float]]:
    """`jobs` = 4 sparse configs x jobs/4 subsets of mixed size; the plan knows each one's work.

    Returns the spec and each subset's scripted work in seconds."""
    rng = random.Random(seed)
    sparse = ["s1", "s2", "s3", "s4"]
    entries = []
    for index in range(jobs // len(sparse)):
        samples = rng.choice([1, 2, 4])
        tokens = int(rng.choice([300, 600]) * rng.uniform(0.8, 1.2))
        entries.append(
            {
                "name": "scripted_work",
                "subsets": [f"w{index:02d}"],
                "options": {"samples": samples, "context_tokens": tokens},
            }
        )
    work = {
        f"w{i:02d}": e["options"]["samples"] * e["options"]["context_tokens"] * seconds_per_token
        for i, e in enumerate(entries)
    }
    data = experiment(base, sparse=sparse, benchmarks=entries)
    data["adapter"] = {
        "factory": FACTORY,
        "model_kwargs": {"seconds_per_token": seconds_per_token},
    }
    data["execution"] = {"share_prefill": share_prefill}
    return spec_from_dict(data), work


def scripted(
    base: Path, jobs: int, slots: int, seed: int, share_prefill: bool, backend: str = "local"
) -> None:
    spec, work = scripted_experiment(base, jobs, seed, share_prefill)
    t0 = time.perf_counter()
    results = BenchmarkExecutor(
        max_concurrent_runs=slots,
        base_result_dir=base / "results",
        share_prefill=share_prefill,
        backend=backend,
    ).run(spec)
    wall = time.perf_counter() - t0
    if not results.ok:
        raise SystemExit(f"scripted run failed: {results.counts()}")

    def job_work(job: Any) -> float:
        return work[job.subset]

    planned = plan(spec)
    total = sum(job_work(job) for job in planned)
    events = read_events(base / "results")
    started = [e for e in events if e["event"] == "job_started"]
    finished = [e for e in events if e["event"] == "job_finished"]
    bundles = {e["bundle"] for e in started}
    makespan = max(e["t"] for e in finished) - min(e["t"] for e in started)
    ideal = max(max(job_work(job) for job in planned), total / slots)
    # a worker's gap: its bundle's last job finished -> its next bundle started
    gaps = []
    for worker in {e["worker"] for e in started}:
        firsts = {}
        for e in started:
            if e["worker"] == worker:
                firsts.setdefault(e["bundle"], e["t"])
        lasts: dict[str, float] = {}
        for e in finished:
            if e["worker"] == worker:
                lasts[e["bundle"]] = max(lasts.get(e["bundle"], 0.0), e["t"])
        timeline = sorted(
            [(t, "start") for t in firsts.values()] + [(t, "end") for t in lasts.values()]
        )
        gaps += [
            b[0] - a[0] for a, b in itertools.pairwise(timeline) if (a[1], b[1]) == ("end", "start")
        ]
    extra = []
    for job in planned:
        manifest = json.loads((job.result_dir / "manifest.json").read_text())
        bundled = len(manifest.get("bundle") or [job.job_id])
        extra.append(manifest["duration_s"] / bundled - job_work(job))
    print(
        f"scripted [{backend}], share_prefill={str(share_prefill).lower()}: {len(planned)} jobs "
        f"({len(bundles)} dispatches) on {slots} slots, total work {total:.1f}s, "
        f"longest job {max(job_work(j) for j in planned):.2f}s"
    )
    print(
        f"  makespan (first start -> last finish) {makespan:.2f}s, ideal lower bound {ideal:.2f}s, "
        f"ratio {makespan / ideal:.3f}"
    )
    # What the scheduler controls: packing and dispatch. Each dispatch's measured length (its
    # first start -> its last finish, in-job overhead included) and each worker's ready time.
    first = min(e["t"] for e in started)
    ready = [max(0.0, e["t"] - first) for e in events if e["event"] == "worker_started"][:slots]
    ready_ideal = max(max(job_work(job) for job in planned), (total + sum(ready)) / slots)
    print(
        f"  with worker start-up ({sum(ready):.2f}s of slots not ready after the first start): "
        f"ideal {ready_ideal:.2f}s, ratio {makespan / ready_ideal:.3f}"
    )
    spans = [
        max(e["t"] for e in finished if e["bundle"] == bundle)
        - min(e["t"] for e in started if e["bundle"] == bundle)
        for bundle in bundles
    ]
    measured_ideal = max(max(spans), (sum(spans) + sum(ready)) / slots)
    print(
        f"  against measured dispatch lengths (in-job overhead counted as work) and worker "
        f"ready times: ideal {measured_ideal:.2f}s, ratio {makespan / measured_ideal:.3f}"
    )
    print(f"  wall incl. worker start-up and records {wall:.2f}s")
    if gaps:
        print(
            f"  dispatch gap (a worker's finish -> its next start): mean "
            f"{1000 * statistics.mean(gaps):.1f} ms, max {1000 * max(gaps):.1f} ms, "
            f"{1000 * sum(gaps) / len(planned):.1f} ms per job"
        )
    print(
        f"  in-job overhead beyond scripted work (benchmark load/score/manifest): "
        f"mean {1000 * statistics.mean(extra):.1f} ms per job"
    )


def in_process(base: Path, jobs: int, seed: int) -> None:
    """The same jobs with no scripted work, one at a time on one Worker in this process.

    What the in-job path itself costs (data, requests, saving, scoring, files, manifest), as
    wall and CPU time per job: no other worker competes for the cores and no pipe is in the
    way, so the figure moves little with the load of the machine, unlike the ones above.
    """
    spec, _ = scripted_experiment(base, jobs, seed, share_prefill=False, seconds_per_token=0.0)
    planned = plan(spec)
    worker = Worker(0, "cpu")
    worker.execute(Bundle((planned[0],), (1,)))  # the adapter is made once per worker
    walls, cpus = [], []
    for job in planned[1:]:
        wall, cpu = time.perf_counter(), time.process_time()
        worker.execute(Bundle((job,), (1,)))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(
        f"in-job path alone ({len(walls)} jobs, no scripted work, one worker in this process): "
        f"wall {1000 * statistics.mean(walls):.1f} ms, CPU {1000 * statistics.mean(cpus):.1f} ms "
        f"per job (median wall {1000 * statistics.median(walls):.1f} ms)"
    )


def smollm2(base: Path, max_requests: int) -> None:
    sparse = {
        "dense": None,
        "streaming": "streaming",
        "oracle_topk": "oracle_topk",
        "quest": "quest",
    }
    data: dict[str, Any] = {
        "models": ["smollm2-135m-instruct"],
        "sparse_configs": sparse,
        "benchmarks": [
            {
                "name": "ruler_synthetic",
                "subsets": ["niah_single_1", "niah_single_2", "vt"],
                "options": {"context_lengths": [1024], "num_samples": 1},
            }
        ],
        "generation_kwargs": {"max_new_tokens": 8},
        "request_kwargs": {"max_requests": max_requests},
    }
    kept = spec_from_dict({**data, "result_dir": str(base / "kept")})
    t0 = time.perf_counter()
    executor = BenchmarkExecutor(  # one job per dispatch, like the baselines (no shared prefill)
        max_concurrent_runs=1, base_result_dir=base / "kept", share_prefill=False
    )
    results = executor.run(kept)
    kept_wall = time.perf_counter() - t0
    loads = [e for e in read_events(base / "kept") if e["event"] == "model_loaded"]

    # Baseline A: one process, but a fresh Worker (model load + data) for every job.
    reload = spec_from_dict({**data, "result_dir": str(base / "reload")})
    t0 = time.perf_counter()
    load_s: list[float] = []
    for job in plan(reload):
        load_s.append(run_fresh_worker(job))
    reload_wall = time.perf_counter() - t0
    # Baseline B: a fresh process per job (what a job-per-process launcher pays: imports too).
    fresh = spec_from_dict({**data, "result_dir": str(base / "fresh")})
    context = multiprocessing.get_context("spawn")
    t0 = time.perf_counter()
    with context.Pool(1, maxtasksperchild=1) as pool:
        fresh_load_s = [pool.apply(run_fresh_worker, (job,)) for job in plan(fresh)]
    fresh_wall = time.perf_counter() - t0

    n = len(plan(kept))
    print(
        f"smollm2: {n} jobs (1 model x 4 sparse configs x 3 subsets, max_requests={max_requests}), 1 CPU slot"
    )
    print(
        f"  executor (model kept, sparse config swapped): {kept_wall:.1f}s incl. worker start-up, "
        f"{len(loads)} model load(s), ok={results.ok}"
    )
    print(
        f"  baseline A, reload model per job in one process: {reload_wall:.1f}s "
        f"({len(load_s)} loads, mean {statistics.mean(load_s):.1f}s); executor speed-up {reload_wall / kept_wall:.2f}x"
    )
    print(
        f"  baseline B, fresh process per job: {fresh_wall:.1f}s "
        f"({len(fresh_load_s)} loads, mean {statistics.mean(fresh_load_s):.1f}s); "
        f"executor speed-up {fresh_wall / kept_wall:.2f}x"
    )


def run_fresh_worker(job: Any) -> float:
    """Run one job on a new Worker; returns its model-load seconds."""
    seconds: list[float] = []
    ended: list[tuple[str, dict[str, Any]]] = []

    def note(kind: str, payload: dict[str, Any]) -> None:
        if kind == "model_loaded":
            seconds.append(payload["seconds"])
        elif kind in ("finished", "raised"):
            ended.append((kind, payload))

    worker = Worker(0, "cpu", notify=note)
    worker.execute(Bundle((job,), (1,)))
    worker.release_model()
    if ended[0][0] != "finished":
        raise SystemExit(f"baseline job failed: {ended[0][1]}")
    return seconds[0]


def on_ray(tmp: Path, args: argparse.Namespace) -> None:
    """The same scripted jobs on a local Ray instance with one logical CPU per slot."""
    import ray

    here = str(Path(__file__).parent)  # actors import _scripted_work too
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=args.slots,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        for share in (False, True):
            name = "ray_bundles" if share else "ray_jobs"
            scripted(tmp / name, args.jobs, args.slots, args.seed, share, backend="ray")
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smollm2", action="store_true", help="also run the SmolLM2 matrix (CPU heavy)"
    )
    parser.add_argument("--max-requests", type=int, default=1)
    parser.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="ray: the scripted jobs on local workers, then on Ray actors",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))  # _scripted_work (workers inherit sys.path)
    with tempfile.TemporaryDirectory(prefix="sah-sched-") as tmp:
        scripted(Path(tmp) / "jobs", args.jobs, args.slots, args.seed, share_prefill=False)
        scripted(Path(tmp) / "bundles", args.jobs, args.slots, args.seed, share_prefill=True)
        in_process(Path(tmp) / "in_process", args.jobs, args.seed)
        if args.backend == "ray":
            on_ray(Path(tmp), args)
        if args.smollm2:
            smollm2(Path(tmp) / "smollm2", args.max_requests)


if __name__ == "__main__":
    main()
