"""The checks of `benchmarks/gpu_smoke.sh` (needs a CUDA device; run through that script).

    python benchmarks/gpu_smoke.py prepare WORK --gpus 0      # write the two experiment files
    python benchmarks/gpu_smoke.py pinning WORK --gpus 0      # check the fault-adapter run
    python benchmarks/gpu_smoke.py real WORK --gpus 0         # check the SmolLM2 run
    python benchmarks/gpu_smoke.py bundled WORK --gpus 0      # check the shared-prefill runs

Each check prints `PASS <what>: <evidence>` lines, or exits with `FAIL <what>: <why>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from sparse_attention_hub.executor.backends.local import worker_environment
from sparse_attention_hub.executor.testing import experiment, read_events

WORKERS_PER_GPU = 2
JOBS_PER_GPU = 4
MEMORY_FRACTION = 0.4  # per worker: two workers on one GPU take at most 80% of it
OOM_SHARE = 0.6  # of the GPU: more than one worker may take, less than the whole GPU


BUNDLED_CONFIGS = {"dense": None, "streaming": "streaming", "oracle_topk": "oracle_topk"}
BUNDLED_SAMPLES = 2


def prepare(work: Path, gpus: list[int]) -> None:
    """`pinning.yaml` (fault adapter: pinning, concurrency, a real CUDA OOM), `real.yaml`, and
    `bundled.yaml` / `separate.yaml` (SmolLM2 x 3 configs on one worker, shared prefill on/off)."""
    import torch

    total_gb = torch.cuda.get_device_properties(gpus[0]).total_memory / 2**30
    # the OOM job first: it fails while its neighbour on the GPU is mid-job
    sparse = ["oom"] + [f"s{i}" for i in range(JOBS_PER_GPU * len(gpus))]
    faults = {"/oom/": {"action": "allocate", "gb": OOM_SHARE * total_gb, "times": 9}}
    pinning = experiment(work / "pinning", sparse=sparse, faults=faults, delay_s=1.0)
    pinning["execution"] = {
        "gpu_ids": gpus,
        "max_concurrent_runs": WORKERS_PER_GPU * len(gpus),
        "gpu_memory_fraction": MEMORY_FRACTION,
        "max_retries": 1,
    }
    real = {
        "models": ["smollm2-135m-instruct"],
        "sparse_configs": {"dense": None, "streaming": "streaming"},
        "benchmarks": [{"name": "mock_benchmark"}],
        "generation_kwargs": {"max_new_tokens": 16},
        "result_dir": str(work / "real" / "results"),
        "execution": {"gpu_ids": gpus, "max_concurrent_runs": WORKERS_PER_GPU * len(gpus)},
    }
    runs = {"pinning": pinning, "real": real}
    for name, share in (("bundled", True), ("separate", False)):
        runs[name] = {
            "models": ["smollm2-135m-instruct"],
            "sparse_configs": BUNDLED_CONFIGS,
            "benchmarks": [
                {
                    "name": "ruler_synthetic",
                    "subsets": ["niah_single_1"],
                    "options": {"context_lengths": [4096], "num_samples": BUNDLED_SAMPLES},
                }
            ],
            "generation_kwargs": {"max_new_tokens": 16},
            "result_dir": str(work / name / "results"),
            "execution": {"gpu_ids": gpus[:1], "max_concurrent_runs": 1, "share_prefill": share},
        }
    for name, data in runs.items():
        (work / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"prepared {work}: GPU(s) {gpus}, {total_gb:.0f} GiB each")


def fail(what: str, why: Any) -> None:
    raise SystemExit(f"FAIL {what}: {why}")


def last_run_events(results: Path) -> list[dict[str, Any]]:
    """events.jsonl of the latest run only (SMOKE_DIR may be reused)."""
    events = read_events(results)
    return [e for e in events if e["run_id"] == events[-1]["run_id"]] if events else []


def jobs_of(results: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(results.glob(f"*/*/*/{name}"))]


def check_pinning(work: Path, gpus: list[int]) -> None:
    results = work / "pinning" / "results"
    events = last_run_events(results)
    want = Counter({f"cuda:{g}": WORKERS_PER_GPU for g in gpus})
    devices = Counter(e["device"] for e in events if e["event"] == "worker_started")
    if devices != want:
        fail("workers per GPU", f"started {dict(devices)}, expected {dict(want)}")
    print(f"PASS workers per GPU: {dict(devices)}")

    physical = {
        f"cuda:{g}": worker_environment(f"cuda:{g}", 1, os.environ)["CUDA_VISIBLE_DEVICES"]
        for g in gpus
    }
    manifests = jobs_of(results, "manifest.json")
    if len(manifests) != JOBS_PER_GPU * len(gpus):
        fail("jobs complete", f"{len(manifests)} manifests, expected {JOBS_PER_GPU * len(gpus)}")
    for manifest in manifests:
        probe = json.loads((results / manifest["job_id"] / "device.json").read_text())
        if probe["device_count"] != 1 or probe["CUDA_VISIBLE_DEVICES"] != physical.get(
            manifest["device"]
        ):
            fail("pinning", f"job on {manifest['device']} saw {probe}")
    used = sorted({m["device"] for m in manifests})
    if used != sorted(physical):
        fail("every GPU used", used)
    print(f"PASS pinning: every job's worker saw exactly its own GPU; jobs on {used}")

    spans: dict[str, list[tuple[float, float, Any]]] = {}
    started = {e["job_id"]: e for e in events if e["event"] == "job_started"}  # last attempt
    for event in events:
        if event["event"] == "job_finished":
            start = started[event["job_id"]]
            spans.setdefault(start["device"], []).append((start["t"], event["t"], start["pid"]))
    for device, intervals in spans.items():
        overlap = any(
            a[2] != b[2] and a[0] < b[1] and b[0] < a[1] for a, b in combinations(intervals, 2)
        )
        if not overlap:
            fail("workers share a GPU", f"no two jobs ran at once on {device}")
    print(f"PASS workers share a GPU: jobs of different workers overlapped on {sorted(spans)}")

    failures = jobs_of(results, "failure.json")
    if len(failures) != 1:
        fail("cuda oom", f"{len(failures)} failed jobs, expected only the oom one")
    failure = failures[0]
    if (failure["category"], failure["exc_type"]) != ("cuda_oom", "torch.OutOfMemoryError"):
        fail("cuda oom", {k: failure[k] for k in ("category", "exc_type", "message")})
    print(
        f"PASS cuda oom: {OOM_SHARE:.0%} of the GPU past a {MEMORY_FRACTION:.0%} fraction -> "
        f"{failure['category']} ({failure['exc_type']}) after {len(failure['attempts'])} "
        "attempts; its neighbours on the GPU completed"
    )


def check_real(work: Path, gpus: list[int]) -> None:
    results = work / "real" / "results"
    manifests = jobs_of(results, "manifest.json")
    if len(manifests) != 2:
        fail("smollm2", f"{len(manifests)} jobs complete, expected 2")
    for manifest in manifests:
        config = json.loads((results / manifest["job_id"] / "config.json").read_text())
        seen = config.get("adapter", {}).get("device")
        if not manifest["device"].startswith("cuda:") or seen != "cuda:0":
            fail("smollm2 device", f"{manifest['job_id']}: {manifest['device']}, adapter {seen}")
        if not isinstance(manifest["overall"], (int, float)):
            fail("smollm2 score", f"{manifest['job_id']}: overall {manifest['overall']!r}")
    loads = [e for e in last_run_events(results) if e["event"] == "model_loaded"]
    summary = ", ".join(
        f"{m['sparse_config']} {m['overall']:.0f}/100 in {m['duration_s']:.1f}s on {m['device']}"
        for m in manifests
    )
    print(f"PASS smollm2: {summary}; {len(loads)} model load(s), weights on the worker's GPU")


def check_bundled(work: Path, gpus: list[int]) -> None:
    """One worker ran the 3 configs as one bundle: every context prefilled once (not 3 times),
    each job complete in its own dir, and the same answers as the run without sharing."""
    answers: dict[str, dict[str, dict[str, str]]] = {}
    prefills: dict[str, float] = {}
    for name in ("bundled", "separate"):
        results = work / name / "results"
        manifests = jobs_of(results, "manifest.json")
        if len(manifests) != len(BUNDLED_CONFIGS):
            fail(f"{name} run", f"{len(manifests)} jobs complete, expected {len(BUNDLED_CONFIGS)}")
        prefills[name] = sum(m["timing"]["contexts_prefilled"] for m in manifests)
        answers[name] = {}
        for manifest in manifests:
            lines = (results / manifest["job_id"] / "predictions.jsonl").read_text().splitlines()
            answers[name][manifest["sparse_config"]] = {
                r["sample_id"]: r["prediction"] for r in map(json.loads, lines)
            }
        if name == "bundled" and any(len(m["bundle"]) != len(BUNDLED_CONFIGS) for m in manifests):
            fail("bundled run", [m["bundle"] for m in manifests])
    expected = {"bundled": BUNDLED_SAMPLES, "separate": BUNDLED_SAMPLES * len(BUNDLED_CONFIGS)}
    if any(abs(prefills[n] - expected[n]) > 1e-6 for n in expected):
        fail("shared prefill", f"contexts prefilled {prefills}, expected {expected}")
    if answers["bundled"] != answers["separate"]:
        fail("shared prefill answers", "bundled and separate runs answered differently")
    data = yaml.safe_load((work / "bundled.yaml").read_text())
    tokens = data["benchmarks"][0]["options"]["context_lengths"][0]
    print(
        f"PASS shared prefill: {len(BUNDLED_CONFIGS)} configs x {BUNDLED_SAMPLES} samples at {tokens} "
        f"tokens in one bundle, {prefills['bundled']:.0f} context prefills instead of "
        f"{prefills['separate']:.0f}, answers identical to the run without sharing"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("step", choices=["prepare", "pinning", "real", "bundled"])
    parser.add_argument("work", type=Path)
    parser.add_argument("--gpus", default="0", help="comma-separated GPU ids")
    args = parser.parse_args()
    gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
    steps = {"prepare": prepare, "pinning": check_pinning, "real": check_real}
    steps["bundled"] = check_bundled
    steps[args.step](args.work, gpus)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
