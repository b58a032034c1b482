"""One context prefill for every sparse config: the same matrix with and without share_prefill.

    python benchmarks/shared_prefill.py       # SmolLM2 x {dense, streaming, oracle_topk,
                                              # vattention} x ruler_synthetic niah_single_1,
                                              # 4096 tokens, 4 samples, 1 CPU worker

Both runs go through the real executor (one worker process each, model load included). Context
prefills are counted from the jobs' `timing` (a context shared by n jobs counts 1/n in each);
the answers of the two runs are compared token for token (as text). Besides the wall time, each
run's job time is printed: its first job start -> last job end less the model load and the
data generation (from events.jsonl), i.e. what sharing the prefill can change; the fixed costs
(worker start-up, model load, synthetic data) are paid once by either run.
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


def experiment(base: Path, share: bool, args: argparse.Namespace) -> dict[str, Any]:
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
        "result_dir": str(base / ("shared" if share else "separate")),
        "execution": {"share_prefill": share, "max_concurrent_runs": 1},
    }


def run(base: Path, share: bool, args: argparse.Namespace) -> dict[str, Any]:
    spec = spec_from_dict(experiment(base, share, args))
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sah-prefill-") as tmp:
        # shared first: any cold cache (weights, synthetic rows) slows it, not the baseline
        shared = run(Path(tmp), True, args)
        separate = run(Path(tmp), False, args)
    jobs = len(CONFIGS)
    print(
        f"{args.model}: {jobs} sparse configs x ruler_synthetic niah_single_1 at {args.context} "
        f"tokens, {args.samples} samples, max_new_tokens {args.max_new_tokens}, 1 CPU worker"
    )
    for name, result in (("share_prefill: true ", shared), ("share_prefill: false", separate)):
        timing = result["timing"]
        print(
            f"  {name}  wall {result['wall']:7.1f}s  contexts prefilled "
            f"{timing.get('contexts_prefilled', 0):5.2f}  context prefill "
            f"{timing.get('context_prefill_s', 0):6.1f}s  question prefill "
            f"{timing.get('question_prefill_s', 0):5.1f}s  decode {timing.get('decode_s', 0):6.1f}s"
            f"  tokens {int(timing.get('tokens_generated', 0))}"
        )
    print(f"  speed-up {separate['wall'] / shared['wall']:.2f}x (wall, model load included)")
    print(
        f"  job time (less model load and data generation) {shared['jobs_s']:.1f}s vs "
        f"{separate['jobs_s']:.1f}s: speed-up {separate['jobs_s'] / shared['jobs_s']:.2f}x"
    )
    same = sum(shared["answers"][name] == separate["answers"][name] for name in CONFIGS)
    print(f"  identical answers: {same} of {jobs} configs")


if __name__ == "__main__":
    main()
