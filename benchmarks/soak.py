"""Fault-injection soak of the executor: nothing lost, nothing answered twice, nothing escapes.

A matrix of `--jobs` jobs (models x sparse configs of the mock benchmark, 5 samples each) on the
scripted fault adapter runs in real processes on real files. Each round resets a few random jobs
(their dirs are removed, so there is work to do), injects faults, then a clean rerun must finish
every job, and the tree must equal a fault-free run's: the same complete jobs, the same
prediction per sample, no sample answered twice (saved twice in `predictions.jsonl`), the same
metrics, and no file outside the result dir touched.

Faults (random, seeded): SIGKILL of a worker at a random moment of its work; SIGKILL / SIGINT /
SIGTERM of the driver (`sah run`, a real process) followed by the rerun; two `sah run` on one
result dir at once; a full disk (OSError ENOSPC) on one job's writes; and damage to the tree:
a torn last line in `predictions.jsonl`, deleted or truncated `metrics.json` / `manifest.json`,
and a job dir replaced by a symlink out of the result dir (the run must refuse it).

    python benchmarks/soak.py --rounds 200          # the long run
    python benchmarks/soak.py --rounds 4 --seed 1   # what CI runs
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor import BenchmarkExecutor, spec_from_dict
from sparse_attention_hub.executor.testing import FACTORY

PROCESS_FAULTS = (
    "worker_sigkill",
    "driver_sigkill",
    "driver_sigint",
    "driver_sigterm",
    "two_executors",
    "enospc",
)
TREE_FAULTS = (
    "torn_predictions",
    "delete_metrics",
    "truncate_metrics",
    "delete_manifest",
    "truncate_manifest",
    "symlink_out",
)
SAH = [sys.executable, "-m", "sparse_attention_hub.cli.main"]


def experiment(base: Path, jobs: int, delay_s: float) -> dict[str, Any]:
    models = ["m1", "m2"]
    per_model = max(1, -(-jobs // len(models)))
    return {
        "models": models,
        "sparse_configs": {f"s{i:02d}": None for i in range(per_model)},
        "benchmarks": [{"name": "mock_benchmark"}],
        "adapter": {
            "factory": FACTORY,
            "model_kwargs": {
                "delay_s": delay_s,
                "answer": "Paris",
                "faults": str(base / "faults.json"),
            },
        },
        "result_dir": str(base / "results"),
        "execution": {"max_concurrent_runs": 2, "max_retries": 1},
    }


def run_clean(data: dict[str, Any]) -> Any:
    """An in-process rerun (debug backend) with no faults left: it must finish every job."""
    Path(data["adapter"]["model_kwargs"]["faults"]).write_text("{}")
    spec = spec_from_dict({**data, "execution": {"backend": "debug", "max_retries": 0}})
    return BenchmarkExecutor.from_spec(spec, rerun_failed=True, progress=False).run(spec)


def snapshot(results: Path) -> dict[str, dict[str, Any]]:
    """Per complete job: prediction per sample, saved-twice count, metrics."""
    tree: dict[str, dict[str, Any]] = {}
    for manifest in sorted(results.glob("*/*/*/manifest.json")):
        job = manifest.parent
        lines = (job / "predictions.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        keys = Counter((r["subset"], r["sample_id"]) for r in records)
        tree[job.relative_to(results).as_posix()] = {
            "predictions": {f"{r['subset']}/{r['sample_id']}": r["prediction"] for r in records},
            "twice": sum(n - 1 for n in keys.values()),
            "metrics": json.loads((job / "metrics.json").read_text()),
        }
    return tree


def digest(folder: Path) -> str:
    """Names, sizes and bytes of every file under `folder` (the files outside the result dir)."""
    sha = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        sha.update(str(path.relative_to(folder)).encode())
        if path.is_file() and not path.is_symlink():
            sha.update(path.read_bytes())
    return sha.hexdigest()


class Soak:
    def __init__(
        self, workdir: Path, jobs: int, seed: int, delay_s: float, process_share: float
    ) -> None:
        self.rng = random.Random(seed)
        self.process_share = process_share
        self.base = workdir / "soak"
        self.outside = workdir / "outside"  # must never change
        self.outside.mkdir(parents=True)
        (self.outside / "keep.txt").write_text("not yours\n")
        self.data = experiment(self.base, jobs, delay_s)
        self.base.mkdir(parents=True)
        (self.base / "faults.json").write_text("{}")
        self.yaml = self.base / "experiment.yaml"
        self.yaml.write_text(yaml.safe_dump(self.data))
        self.results = self.base / "results"
        self.faults: Counter[str] = Counter()
        self.lost = self.twice = self.outside_touched = 0
        self.problems: list[str] = []

    # ----- the reference ---------------------------------------------------------------------
    def reference(self) -> dict[str, dict[str, Any]]:
        """The tree of a fault-free run of the same matrix (in-process, in its own dir)."""
        other = self.base.parent / "reference"
        other.mkdir()
        data = json.loads(json.dumps(self.data))
        data["result_dir"] = str(other / "results")
        data["adapter"]["model_kwargs"]["faults"] = str(other / "faults.json")
        result = run_clean(data)
        assert result.ok, result.counts()
        tree = snapshot(other / "results")
        shutil.rmtree(other)
        return tree

    # ----- faults ----------------------------------------------------------------------------
    def reset_some(self, job_ids: list[str]) -> list[str]:
        chosen = self.rng.sample(job_ids, k=min(len(job_ids), self.rng.randint(4, 8)))
        for job_id in chosen:
            shutil.rmtree(self.results / job_id, ignore_errors=True)
        return chosen

    def damage(self, kind: str, job_ids: list[str]) -> None:
        job = self.results / self.rng.choice(job_ids)
        if kind == "torn_predictions":
            for name in ("manifest.json", "metrics.json"):
                (job / name).unlink(missing_ok=True)  # make it resumable, then tear its file
            with open(job / "predictions.jsonl", "a") as handle:
                handle.write('{"subset": "reading_comprehension", "sample_id": "q')
        elif kind in ("delete_metrics", "delete_manifest"):
            (job / f"{kind.split('_')[1]}.json").unlink(missing_ok=True)
        elif kind in ("truncate_metrics", "truncate_manifest"):
            path = job / f"{kind.split('_')[1]}.json"
            if path.exists():
                path.write_bytes(path.read_bytes()[: self.rng.randint(0, 10)])

    def symlink_out(self, job_ids: list[str]) -> None:
        """A job dir replaced by a link out of the tree: every run must refuse and touch nothing."""
        job = self.results / self.rng.choice(job_ids)
        shutil.rmtree(job, ignore_errors=True)
        job.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(self.outside, job)
        try:
            run_clean(self.data)
            self.problems.append(f"a link out of the tree was not refused: {job}")
        except ConfigError as exc:
            if str(job) not in str(exc):
                self.problems.append(f"refusal does not name the link: {exc}")
        job.unlink()

    def driver(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*SAH, "run", str(self.yaml), "--no-progress", "--rerun-failed"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def new_events(self, offset: int) -> list[dict[str, Any]]:
        path = self.results / "events.jsonl"
        if not path.exists():
            return []
        with open(path, "rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode("utf-8", "replace").splitlines()
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):  # a line being written right now
                events.append(json.loads(line))
        return events

    def wait_for(self, offset: int, kind: str, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            events = self.new_events(offset)
            if any(e.get("event") == kind for e in events):
                return events
            time.sleep(0.05)
        return self.new_events(offset)

    def process_fault(self, kind: str, job_ids: list[str]) -> None:
        offset = (self.results / "events.jsonl").stat().st_size
        if kind == "enospc":
            victim = self.rng.choice(job_ids)
            rule = {"action": "enospc", "on_request": self.rng.randint(1, 3)}
            (self.base / "faults.json").write_text(json.dumps({victim: rule}))
        if kind == "two_executors":
            first, second = self.driver(), self.driver()
            for process in (first, second):
                process.wait(timeout=600)
            return
        process = self.driver()
        if kind == "enospc":
            process.wait(timeout=600)
            return
        self.wait_for(offset, "job_started")
        time.sleep(self.rng.uniform(0.0, 0.6))  # a random moment of the work
        workers = {e["pid"] for e in self.new_events(offset) if e.get("event") == "worker_started"}
        if kind == "worker_sigkill":
            if workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.rng.choice(sorted(workers)), signal.SIGKILL)
            process.wait(timeout=600)
            return
        how = {
            "driver_sigkill": signal.SIGKILL,
            "driver_sigint": signal.SIGINT,
            "driver_sigterm": signal.SIGTERM,
        }[kind]
        process.send_signal(how)
        process.wait(timeout=600)
        for pid in workers:  # orphans end themselves within a second; wait for them
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    # ----- a round ---------------------------------------------------------------------------
    def round(self, reference: dict[str, dict[str, Any]], force: str | None = None) -> None:
        job_ids = sorted(reference)
        outside_before = digest(self.outside)
        reset = self.reset_some(job_ids)
        complete = [j for j in job_ids if j not in reset]
        for _ in range(self.rng.randint(0, 2)):
            kind = self.rng.choice(TREE_FAULTS)
            if kind == "symlink_out":
                self.symlink_out(reset)
            else:
                self.damage(kind, complete)
            self.faults[kind] += 1
        if force or self.rng.random() < self.process_share:
            kind = force or self.rng.choice(PROCESS_FAULTS)
            self.process_fault(kind, job_ids)
            self.faults[kind] += 1
        result = run_clean(self.data)
        if not result.ok:
            self.problems.append(f"clean rerun did not finish: {result.counts()}")
        tree = snapshot(self.results)
        self.twice += sum(tree[j]["twice"] for j in tree)
        for job_id, want in reference.items():
            got = tree.get(job_id)
            if got is None or got["predictions"] != want["predictions"]:
                self.lost += 1
                self.problems.append(f"{job_id}: missing or different after the rerun")
            elif got["metrics"] != want["metrics"]:
                self.lost += 1
                self.problems.append(f"{job_id}: metrics differ from the fault-free run")
        if digest(self.outside) != outside_before:
            self.outside_touched += 1
            self.problems.append("files outside the result dir changed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=40, help="jobs in the matrix (>= 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per request")
    parser.add_argument(
        "--process-share",
        type=float,
        default=0.25,
        help="share of rounds (after the first six) with a process fault (each starts `sah run`)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the runs' warnings (corrupt, torn) are expected
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sah-soak-") as tmp:
        soak = Soak(Path(tmp), args.jobs, args.seed, args.delay, args.process_share)
        reference = soak.reference()
        result = run_clean(soak.data)  # the starting tree: every job complete
        assert result.ok, result.counts()
        for number in range(args.rounds):
            # the first rounds cover the process faults in order, so a short run sees each
            force = PROCESS_FAULTS[number] if number < len(PROCESS_FAULTS) else None
            soak.round(reference, force)
            print(
                f"round {number + 1}/{args.rounds}: {sum(soak.faults.values())} faults, "
                f"{soak.lost} lost, {soak.twice} twice, {time.monotonic() - t0:.0f}s",
                flush=True,
            )
    print(f"rounds: {args.rounds}  jobs: {len(reference)}  seed: {args.seed}")
    print("faults injected: " + ", ".join(f"{k} {v}" for k, v in sorted(soak.faults.items())))
    print(f"jobs lost: {soak.lost}")
    print(f"samples answered twice: {soak.twice}")
    print(f"files outside touched: {soak.outside_touched}")
    print(f"wall time: {time.monotonic() - t0:.1f} s")
    for problem in soak.problems[:20]:
        print(f"problem: {problem}")
    return 0 if not (soak.lost or soak.twice or soak.outside_touched or soak.problems) else 1


if __name__ == "__main__":
    sys.exit(main())
