"""RULER (Hsieh et al., 2024): 13 synthetic long-context tasks at four context lengths.

Rows come pre-generated from the hub (`simonjegou/ruler`, one config per length, RULER's
`prepare.py` output with the Llama-3.1 tokenizer). Scoring and aggregation follow RULER's
`evaluate.py` (docs/benchmarks.md §5) and are shared with `ruler_synthetic` through
`scorers.ruler_score_rows` / `scorers.ruler_aggregate`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.loading import normalise_rows
from sparse_attention_hub.benchmark.registry import register_benchmark
from sparse_attention_hub.benchmark.scorers import ruler_aggregate, ruler_score_rows

TASKS = (
    "niah_single_1",
    "niah_single_2",
    "niah_single_3",
    "niah_multikey_1",
    "niah_multikey_2",
    "niah_multikey_3",
    "niah_multivalue",
    "niah_multiquery",
    "vt",
    "cwe",
    "fwe",
    "qa_1",
    "qa_2",
)
"""The 13 tasks of every length config."""
HUB_ID = "simonjegou/ruler"


@register_benchmark("ruler")
class Ruler(Benchmark):
    """RULER at 4K-32K tokens; a subset is one length, its rows hold all 13 tasks.

    Local copy: `<data_path>/<length>.jsonl` (or `.parquet`) in the hub schema.
    """

    benchmark_name = "ruler"
    all_datasets: ClassVar[list[str]] = ["4096", "8192", "16384", "32768"]
    hub_id = HUB_ID

    def load_subset(self, subset: str) -> pd.DataFrame:
        frame = self.read_table(subset)
        rows = normalise_rows(frame, subset)
        rows["context_length"] = int(subset)
        unknown = sorted(set(rows["task"]) - set(TASKS))
        if unknown:
            raise ValueError(f"ruler {subset}: unknown task(s) {unknown}; expected {list(TASKS)}")
        return rows

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        """`string_match_part` for qa_1/qa_2, `string_match_all` otherwise, on a cleaned copy."""
        return ruler_score_rows(task, rows)

    def aggregate(self, scored: pd.DataFrame) -> dict[str, Any]:
        return ruler_aggregate(scored, self.benchmark_name)

    def subset_metrics(self) -> dict[str, str]:
        return {length: "string_match (mean of 13 tasks)" for length in self.all_datasets}
