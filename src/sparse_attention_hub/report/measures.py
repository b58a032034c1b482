"""Per-layer attention statistics and timings of the complete jobs, as tidy frames.

Per layer: the mean density (and output error, when the job recorded it) over every record of
`attention_stats.jsonl` of each sparse config's jobs; a job without that file falls back to the
per-layer means in its `metrics.json`. Timings come from each manifest's `duration_s` and, when
the job wrote one, the `timing` block of `metrics.json` (prefill / decode split).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from sparse_attention_hub.report.tree import JobCell, count_lines
from sparse_attention_hub.result_files import ATTENTION_STATS, PREDICTIONS

TIMING_FIELDS = (
    "context_prefill_s",
    "question_prefill_s",
    "decode_s",
    "tokens_generated",
    "contexts_prefilled",
)
LAYER_COLUMNS = ["model", "sparse_config", "layer", "density", "output_error", "records"]


def layer_frame(cells: list[JobCell]) -> pd.DataFrame:
    """model, sparse_config, layer, density, output_error (NaN if not recorded), records."""
    sums: dict[tuple[str, str, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for cell in cells:
        if cell.state != "complete" or cell.path is None:
            continue
        for layer, density, error in _layer_records(cell, cell.path):
            total = sums[(cell.model, cell.sparse_config, layer)]
            total[0] += density
            total[1] += 1
            if error is not None:
                total[2] += error
                total[3] += 1
    rows = [
        [model, config, layer, d / n, e / m if m else math.nan, int(n)]
        for (model, config, layer), (d, n, e, m) in sorted(sums.items())
    ]
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)


def _layer_records(cell: JobCell, job_dir: Path) -> list[tuple[int, float, float | None]]:
    path = job_dir / ATTENTION_STATS
    records: list[tuple[int, float, float | None]] = []
    if path.exists():
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    error = entry.get("output_error")
                    records.append((int(entry["layer"]), float(entry["density"]), error))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line of a killed run: skip it
    if records:
        return records
    density = _per_layer(cell.metrics.get("density"))
    errors = _per_layer(cell.metrics.get("output_error"))
    return [(layer, value, errors.get(layer)) for layer, value in sorted(density.items())]


def _per_layer(block: Any) -> dict[int, float]:
    if not isinstance(block, dict) or not isinstance(block.get("per_layer"), dict):
        return {}
    values = {}
    for key, value in block["per_layer"].items():
        try:
            values[int(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return values


def timing_frame(cells: list[JobCell]) -> pd.DataFrame:
    """One row per complete job: duration, samples answered, seconds per sample, timing block."""
    rows = []
    for cell in cells:
        if cell.state != "complete":
            continue
        duration = _number(cell.manifest.get("duration_s"))
        samples = count_lines(cell.path / PREDICTIONS) if cell.path else 0
        timing = cell.metrics.get("timing")
        timing = timing if isinstance(timing, dict) else {}
        rows.append(
            {
                "model": cell.model,
                "sparse_config": cell.sparse_config,
                "benchmark": cell.benchmark,
                "subset": cell.subset,
                "duration_s": duration,
                "samples": samples,
                "s_per_sample": duration / samples if samples else math.nan,
                **{name: _number(timing.get(name)) for name in TIMING_FIELDS},
            }
        )
    columns = ["model", "sparse_config", "benchmark", "subset", "duration_s", "samples"]
    return pd.DataFrame(rows, columns=[*columns, "s_per_sample", *TIMING_FIELDS])


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
