"""One context prefill for every sparse config: the same matrix with and without share_prefill.

    python benchmarks/shared_prefill.py       # SmolLM2 x {dense, streaming, oracle_topk,
                                              # vattention} x ruler_synthetic niah_single_1,
                                              # 4096 tokens, 4 samples, 1 CPU worker, 2 rounds

Both runs go through the real executor (one worker process each, model load included). Context
prefills are counted from the jobs' `timing` (a context shared by n jobs counts 1/n in each);
the answers of the two runs are compared token for token (as text). Besides the wall time, each
run's job time is printed: its first job start -> last job end less the model load and the
data generation (from events.jsonl), i.e. what sharing the prefill can change; the fixed costs
(worker start-up, model load, synthetic data) are paid once by either run.

The modes run in rounds of alternating order (shared, separate, then separate, shared, ...),
and the speed-up is taken from each mode's times summed over the rounds: a machine whose load
drifts during the benchmark then slows both modes alike instead of whichever ran second.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sparse_attention_hub.executor import BenchmarkExecutor, plan, spec_from_dict
from sparse_attention_hub.executor.testing import read_events

CONFIGS = {
    "dense": None,
    "streaming": "streaming",
    "oracle_topk": "oracle_topk",
    "vattention": "vattention",
}


def experiment(
    base: Path, share: bool, args: argparse.Namespace, round_: int = 0
) -> dict[str, Any]:
    return {
        "models": [args.model],
        "sparse_configs": CONFIGS,
        "benchmarks": [
            {
                "name": "ruler_synthetic",
                "subsets": ["niah_single_1"],
                "options": {"context_lengths": [args.context], "num_samples": args.samples},
            }
        ],
        "generation_kwargs": {"max_new_tokens": args.max_new_tokens},
        "result_dir": str(base / f"{'shared' if share else 'separate'}-{round_}"),
        "execution": {"share_prefill": share, "max_concurrent_runs": 1},
    }


def run(base: Path, share: bool, args: argparse.Namespace, round_: int) -> dict[str, Any]:
    spec = spec_from_dict(experiment(base, share, args, round_))
    t0 = time.perf_counter()
    results = BenchmarkExecutor.from_spec(spec, progress=False).run(spec)
    wall = time.perf_counter() - t0
    if not results.ok:
        raise SystemExit(f"run failed: {results.counts()} {[r.error for r in results.failed]}")
    answers = {}
    for job in plan(spec):
        lines = (job.result_dir / "predictions.jsonl").read_text().splitlines()
        answers[job.sparse_name] = {
            r["sample_id"]: r["prediction"] for r in (json.loads(line) for line in lines)
        }
    events = read_events(Path(spec.result_dir))
    span = max(e["t"] for e in events if e["event"] == "job_finished") - min(
        e["t"] for e in events if e["event"] == "job_started"
    )
    fixed = sum(e["seconds"] for e in events if e["event"] in ("model_loaded", "dataset_loaded"))
    return {
        "wall": wall,
        "jobs_s": span - fixed,
        "timing": results.timing_totals(),
        "answers": answers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds of both modes, in alternating order"
    )
    args = parser.parse_args()
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="sah-prefill-") as tmp:
        for round_ in range(args.rounds):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            for share in order:
                runs[share].append(run(Path(tmp), share, args, round_))
    jobs = len(CONFIGS)
    print(
        f"{args.model}: {jobs} sparse configs x ruler_synthetic niah_single_1 at {args.context} "
        f"tokens, {args.samples} samples, max_new_tokens {args.max_new_tokens}, 1 CPU worker, "
        f"{args.rounds} round(s) in alternating order"
    )
    for round_ in range(args.rounds):
        for share in (True, False):
            result = runs[share][round_]
            timing = result["timing"]
            name = "share_prefill: true " if share else "share_prefill: false"
            print(
                f"  round {round_ + 1} {name}  wall {result['wall']:7.1f}s  contexts prefilled "
                f"{timing.get('contexts_prefilled', 0):5.2f}  context prefill "
                f"{timing.get('context_prefill_s', 0):6.1f}s  question prefill "
                f"{timing.get('question_prefill_s', 0):5.1f}s  decode "
                f"{timing.get('decode_s', 0):6.1f}s  tokens {int(timing.get('tokens_generated', 0))}"
            )

    def total(share: bool, key: str) -> float:
        return sum(result[key] for result in runs[share])

    for round_ in range(args.rounds):
        ratio = runs[False][round_]["wall"] / runs[True][round_]["wall"]
        print(f"  round {round_ + 1} speed-up {ratio:.2f}x (wall)")
    print(
        f"  speed-up {total(False, 'wall') / total(True, 'wall'):.2f}x "
        f"(wall summed over the rounds, model load included)"
    )
    print(
        f"  job time (less model load and data generation) {total(True, 'jobs_s'):.1f}s vs "
        f"{total(False, 'jobs_s'):.1f}s: speed-up "
        f"{total(False, 'jobs_s') / total(True, 'jobs_s'):.2f}x"
    )
    answers = [result["answers"] for share in (True, False) for result in runs[share]]
    same = sum(all(a[name] == answers[0][name] for a in answers) for name in CONFIGS)
    print(f"  identical answers in every run: {same} of {jobs} configs")


if __name__ == "__main__":
    main()
