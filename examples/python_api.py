"""A study from Python: `BenchmarkExecutor.run_benchmark_matrix`, then the HTML report.

    python examples/python_api.py                          # SmolLM2 on the CPU, a few minutes
    python examples/python_api.py --gpus 0,1 --model meta-llama/Llama-3.2-1B-Instruct

Run it again and only what is missing runs: the result tree is the state. The same study as a
YAML file is `sah run`; the report is `sah report <result dir>`.
"""

from __future__ import annotations

import argparse
import logging

from sparse_attention_hub import (
    AdapterConfig,
    BenchmarkConfig,
    BenchmarkExecutor,
    LocalMaskerConfig,
    OracleTopKConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    get_preset,
)
from sparse_attention_hub.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="alias, hub id or path")
    parser.add_argument("--gpus", default="", help="e.g. 0,1 (default: CPU)")
    parser.add_argument("--result-dir", default="results/python_api")
    parser.add_argument("--context-length", type=int, default=1024, help="synthetic RULER tokens")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    gpus = [int(g) for g in args.gpus.split(",") if g.strip()]

    # Sparse configs are (name, config) pairs; None is dense attention, the baseline.
    topk = ResearchAttentionConfig(
        masker_configs=[
            SinkMaskerConfig(sink_size=4),
            LocalMaskerConfig(window_size=64),
            OracleTopKConfig(heavy_size=0.1),
        ]
    )
    executor = BenchmarkExecutor(
        gpu_ids=gpus,
        max_concurrent_runs=max(1, len(gpus)),  # one worker per GPU (or one CPU worker)
        base_result_dir=args.result_dir,
        max_retries=1,
    )
    results = executor.run_benchmark_matrix(
        model_names=[args.model],
        sparse_attention_configs=[
            ("dense", None),
            ("streaming", get_preset("streaming")),
            ("oracle_topk", topk),
        ],
        benchmark_configs=[
            BenchmarkConfig("mock_benchmark"),
            BenchmarkConfig(
                "ruler_synthetic",
                subsets=["niah_single_1"],
                options={"context_lengths": [args.context_length], "num_samples": 2},
            ),
        ],
        adapter_config=AdapterConfig(model_kwargs={}),  # e.g. {"torch_dtype": "bfloat16"}
        generation_kwargs={"max_new_tokens": 24},
        request_kwargs={"max_requests": 10},
    )
    for record in results.failed:
        logging.warning("failed %s: [%s] %s", record.job_id, record.category, record.error)
    logging.info("jobs: %s", results.counts())
    logging.info("report: %s", build_report(results.result_dir))


if __name__ == "__main__":
    main()
