"""How well the executor fills its slots, and what keeping the model loaded saves.

    python benchmarks/scheduler.py             # 48 scripted jobs of mixed durations on 4 slots
    python benchmarks/scheduler.py --smollm2   # also: 1 model x 4 sparse configs x 3 subsets on
                                               # SmolLM2, against reloading the model per job

Part 1 prints the makespan against the ideal lower bound max(longest job, total work / slots),
and the per-job dispatch overhead: the gap on a worker between one job finishing and its next
job starting (parent <-> worker round trip), and the time a job spends beyond its scripted work.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sparse_attention_hub.executor import BenchmarkExecutor, plan, spec_from_dict
from sparse_attention_hub.executor.testing import experiment, read_events
from sparse_attention_hub.executor.worker import Worker


def scripted(base: Path, jobs: int, slots: int, seed: int) -> None:
    rng = random.Random(seed)
    work = {
        f"j{i:02d}": rng.choice([0.3, 0.6, 1.2, 2.4]) * rng.uniform(0.8, 1.2) for i in range(jobs)
    }
    faults = {f"/{name}/": {"job_s": seconds} for name, seconds in work.items()}
    spec = spec_from_dict(experiment(base, sparse=list(work), faults=faults))
    t0 = time.perf_counter()
    results = BenchmarkExecutor(max_concurrent_runs=slots, base_result_dir=base / "results").run(
        spec
    )
    wall = time.perf_counter() - t0
    if not results.ok:
        raise SystemExit(f"scripted run failed: {results.counts()}")

    events = read_events(base / "results")
    started = [e for e in events if e["event"] == "job_started"]
    finished = [e for e in events if e["event"] == "job_finished"]
    makespan = max(e["t"] for e in finished) - min(e["t"] for e in started)
    ideal = max(max(work.values()), sum(work.values()) / slots)
    gaps = []
    for worker in {e["worker"] for e in started}:
        timeline = sorted((e["t"], e["event"]) for e in started + finished if e["worker"] == worker)
        gaps += [
            b[0] - a[0]
            for a, b in itertools.pairwise(timeline)
            if a[1] == "job_finished" and b[1] == "job_started"
        ]
    extra = []
    for job in plan(spec):
        manifest = json.loads((job.result_dir / "manifest.json").read_text())
        extra.append(manifest["duration_s"] - work[job.sparse_name])
    print(
        f"scripted: {jobs} jobs on {slots} slots, total work {sum(work.values()):.1f}s, longest {max(work.values()):.2f}s"
    )
    print(
        f"  makespan (first start -> last finish) {makespan:.2f}s, ideal lower bound {ideal:.2f}s, "
        f"ratio {makespan / ideal:.3f}"
    )
    print(f"  wall incl. worker start-up and records {wall:.2f}s")
    print(
        f"  dispatch gap per job (finish -> next start on a worker): mean {1000 * statistics.mean(gaps):.1f} ms, "
        f"max {1000 * max(gaps):.1f} ms"
    )
    print(
        f"  in-job overhead beyond scripted work (benchmark load/score/manifest): "
        f"mean {1000 * statistics.mean(extra):.1f} ms"
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
    results = BenchmarkExecutor(max_concurrent_runs=1, base_result_dir=base / "kept").run(kept)
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
    worker = Worker(
        0, "cpu", notify=lambda k, p: seconds.append(p["seconds"]) if k == "model_loaded" else None
    )
    outcome = worker.execute(job, attempt=1)
    worker.release_model()
    if outcome["kind"] != "finished":
        raise SystemExit(f"baseline job failed: {outcome}")
    return seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smollm2", action="store_true", help="also run the SmolLM2 matrix (CPU heavy)"
    )
    parser.add_argument("--max-requests", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sah-sched-") as tmp:
        scripted(Path(tmp) / "scripted", args.jobs, args.slots, args.seed)
        if args.smollm2:
            smollm2(Path(tmp) / "smollm2", args.max_requests)


if __name__ == "__main__":
    main()
