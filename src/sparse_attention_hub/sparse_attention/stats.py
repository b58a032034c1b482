"""Per-call attention statistics of a sparse job: density, output error, masker metrics (§8).

One `AttentionStats` belongs to one job. The job calls `start(job_dir or file)` (fresh
`attention_stats.jsonl`, truncated, buffer cleared), the adapter calls `set_context(...)` before
each question prefill / decode step, `sparse_attention_forward` calls `record(...)` once per layer
call, the adapter calls `flush()` after each request, and the job reads `summary()` for
`metrics.json`. Totals cover every call; `sampling_factor` / `max_records` thin only the file.

Density = selected allowed entries / allowed entries; dense layers, full masks and dense-fallback
rows count as fully selected, so dense attention is 1.0, never 0.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STATS_FILENAME = "attention_stats.jsonl"
PHASES = ("question_prefill", "decode")


@dataclass
class _LayerTotals:
    calls: int = 0
    density_sum: float = 0.0
    error_sum: float = 0.0
    error_calls: int = 0


class AttentionStats:
    """Recorder of per-layer-call statistics for one job."""

    def __init__(
        self,
        output_error: bool = False,
        sampling_factor: float = 1.0,
        max_records: int | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 < sampling_factor <= 1.0:
            raise ValueError(f"sampling_factor must be in (0, 1], got {sampling_factor!r}")
        if max_records is not None and max_records < 0:
            raise ValueError(f"max_records must be >= 0 or None, got {max_records!r}")
        self.output_error = output_error
        self.sampling_factor = sampling_factor
        self.max_records = max_records
        self.seed = seed
        self.path: Path | None = None
        self._context: dict[str, Any] = {}
        self._reset()

    def _reset(self) -> None:
        self._buffer: list[dict[str, Any]] = []
        self._written = 0
        self._rng = random.Random(self.seed)
        self._layers: dict[int, _LayerTotals] = {}
        self._selected = 0
        self._allowed = 0
        self._fallback_rows = 0
        self._extra_sums: dict[str, float] = {}
        self._extra_counts: dict[str, int] = {}

    def start(self, target: Path | str | None) -> None:
        """Begin a job: clear everything and truncate the statistics file (None: memory only).

        `target` is the job directory (the file is `<target>/attention_stats.jsonl`) or the
        `.jsonl` file itself, which is what `Benchmark.run_benchmark` passes.
        """
        self._reset()
        self._context = {}
        if target is None:
            self.path = None
            return
        path = Path(target)
        self.path = path if path.suffix == ".jsonl" else path / STATS_FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("", encoding="utf-8")

    def set_context(self, sample_id: str, question_index: int, phase: str, step: int) -> None:
        """Label the following records: phase `question_prefill` (step 0) or `decode` (step 1...)."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        self._context = {
            "sample_id": str(sample_id),
            "question_index": int(question_index),
            "phase": phase,
            "step": int(step),
        }

    def record(
        self,
        *,
        layer: int,
        n_queries: int,
        n_keys: int,
        selected: int,
        allowed: int,
        dense_fallback_rows: int = 0,
        output_error: float | None = None,
        extra: dict[str, float] | None = None,
    ) -> None:
        """Add one layer call; `selected` already counts fallback rows as fully selected."""
        density = selected / allowed if allowed > 0 else 1.0
        totals = self._layers.setdefault(layer, _LayerTotals())
        totals.calls += 1
        totals.density_sum += density
        if output_error is not None:
            totals.error_sum += output_error
            totals.error_calls += 1
        self._selected += selected
        self._allowed += allowed
        self._fallback_rows += dense_fallback_rows
        for name, value in (extra or {}).items():
            self._extra_sums[name] = self._extra_sums.get(name, 0.0) + value
            self._extra_counts[name] = self._extra_counts.get(name, 0) + 1
        if not self._keep_record():
            return
        entry: dict[str, Any] = {
            **self._context,
            "layer": layer,
            "n_queries": n_queries,
            "n_keys": n_keys,
            "density": density,
            "dense_fallback_rows": dense_fallback_rows,
        }
        if self.output_error:
            entry["output_error"] = output_error
        entry.update(extra or {})
        self._buffer.append(entry)

    def _keep_record(self) -> bool:
        if self.max_records is not None and self._written + len(self._buffer) >= self.max_records:
            return False
        return self.sampling_factor >= 1.0 or self._rng.random() < self.sampling_factor

    def flush(self) -> None:
        """Append buffered records to the file (a no-op without one) and clear the buffer."""
        if self.path is not None and self._buffer:
            with self.path.open("a", encoding="utf-8") as handle:
                for entry in self._buffer:
                    handle.write(json.dumps(entry) + "\n")
        self._written += len(self._buffer)
        self._buffer.clear()

    def records(self) -> list[dict[str, Any]]:
        """Records not yet flushed (mainly for tests)."""
        return list(self._buffer)

    def summary(self) -> dict[str, Any]:
        """`density` (overall weighted by allowed entries; per-layer mean of call densities),
        `output_error` (overall mean and per layer, or None when disabled), and counters."""
        per_layer = {
            str(layer): totals.density_sum / totals.calls
            for layer, totals in sorted(self._layers.items())
        }
        overall = self._selected / self._allowed if self._allowed > 0 else 1.0
        result: dict[str, Any] = {
            "density": {"overall": overall, "per_layer": per_layer},
            "output_error": None,
            "dense_fallback_rows": self._fallback_rows,
            "n_calls": sum(totals.calls for totals in self._layers.values()),
        }
        if self.output_error:
            errors = {
                str(layer): totals.error_sum / totals.error_calls
                for layer, totals in sorted(self._layers.items())
                if totals.error_calls
            }
            error_calls = sum(totals.error_calls for totals in self._layers.values())
            error_sum = sum(totals.error_sum for totals in self._layers.values())
            mean_error = error_sum / error_calls if error_calls else None
            result["output_error"] = {"overall": mean_error, "per_layer": errors}
        for name, total in sorted(self._extra_sums.items()):
            result[name] = total / self._extra_counts[name]
        return result

    @staticmethod
    def dense_summary() -> dict[str, Any]:
        """What a dense job reports: density 1.0 and output error 0.0, explicitly."""
        return {
            "density": {"overall": 1.0, "per_layer": {}},
            "output_error": {"overall": 0.0, "per_layer": {}},
            "dense_fallback_rows": 0,
            "n_calls": 0,
        }
