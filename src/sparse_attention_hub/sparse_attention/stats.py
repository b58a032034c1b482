"""Per-call attention statistics of a sparse job: density, output error, masker metrics
(docs/methods.md §8).

One `AttentionStats` belongs to one job. The job calls `start(job_dir or file, keep)` (a fresh
`attention_stats.jsonl`, or, when resuming, the file cut back to the questions in `keep`), the
adapter calls `set_context(...)` before each question prefill / decode step,
`sparse_attention_forward` calls `record(...)` once per layer call, the adapter calls `flush()`
after each question, and the job reads `summary()` for `metrics.json`. Totals cover every call;
`sampling_factor` / `max_records` thin only the per-call lines of the file.

`record` takes device tensors as they are and never reads them: a layer call costs the GPU
stream no round-trip to the host. `flush` (once per question) reads every pending value in one
transfer per device, writes the kept per-call lines and one `question_totals` line per question.
Job totals are the sum of question totals in file order, so a job resumed from its saved answers
reports exactly what an uninterrupted run reports.

Density = selected allowed entries / allowed entries; dense layers, full masks and dense-fallback
rows count as fully selected, so dense attention is 1.0, never 0.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparse_attention_hub.files import write_text_atomic
from sparse_attention_hub.result_files import ATTENTION_STATS as STATS_FILENAME

logger = logging.getLogger(__name__)

PHASES = ("question_prefill", "decode")
TOTALS_KEY = "question_totals"
Number = int | float | torch.Tensor


@dataclass
class _Call:
    """One recorded layer call; `values` may still be device tensors."""

    context: dict[str, Any]
    layer: int
    n_queries: int
    n_keys: int
    keep: bool
    values: dict[str, Number]


@dataclass
class _Totals:
    """Sums of a question or a job; JSON-able through `to_json` / `from_json`."""

    layers: dict[int, list[float]] = field(default_factory=dict)  # calls, density, error, n_err
    selected: int = 0
    allowed: int = 0
    fallback_rows: int = 0
    extra: dict[str, list[float]] = field(default_factory=dict)  # sum, count

    def add_call(self, layer: int, values: dict[str, float]) -> float:
        """Fold one call in; returns its density."""
        selected, allowed = int(values.pop("selected")), int(values.pop("allowed"))
        density = selected / allowed if allowed > 0 else 1.0
        error = values.pop("output_error", math.nan)
        row = self.layers.setdefault(layer, [0, 0.0, 0.0, 0])
        row[0] += 1
        row[1] += density
        if not math.isnan(error):
            row[2] += error
            row[3] += 1
        self.selected += selected
        self.allowed += allowed
        self.fallback_rows += int(values.pop("dense_fallback_rows"))
        for name, value in values.items():
            if math.isnan(value):  # the masker had nothing to report in this call
                continue
            pair = self.extra.setdefault(name, [0.0, 0])
            pair[0] += value
            pair[1] += 1
        return density

    def add(self, other: _Totals) -> None:
        for layer, row in other.layers.items():
            mine = self.layers.setdefault(layer, [0, 0.0, 0.0, 0])
            for index, value in enumerate(row):
                mine[index] += value
        self.selected += other.selected
        self.allowed += other.allowed
        self.fallback_rows += other.fallback_rows
        for name, (total, count) in other.extra.items():
            pair = self.extra.setdefault(name, [0.0, 0])
            pair[0] += total
            pair[1] += count

    def to_json(self) -> dict[str, Any]:
        return {
            "layers": {str(layer): row for layer, row in sorted(self.layers.items())},
            "selected": self.selected,
            "allowed": self.allowed,
            "dense_fallback_rows": self.fallback_rows,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Totals:
        return cls(
            layers={int(layer): list(row) for layer, row in data["layers"].items()},
            selected=int(data["selected"]),
            allowed=int(data["allowed"]),
            fallback_rows=int(data["dense_fallback_rows"]),
            extra={name: list(pair) for name, pair in data["extra"].items()},
        )


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
        self._pending: list[_Call] = []
        self._lines: list[dict[str, Any]] = []  # settled, not yet written
        self._kept = 0  # per-call lines kept so far (written or settled)
        self._rng = random.Random(self.seed)
        self._totals = _Totals()

    def start(self, target: Path | str | None, keep: Collection[str] = ()) -> None:
        """Begin a job (None: memory only, no file).

        `target` is the job directory (the file is `<target>/attention_stats.jsonl`) or the
        `.jsonl` file itself, which is what `Benchmark.run_benchmark` passes. `keep` names the
        samples whose answers are already saved (a resumed job): their lines stay in the file and
        their totals in the summary; every other line is dropped (an empty `keep` = a fresh file).
        """
        self._reset()
        self._context = {}
        if target is None:
            self.path = None
            return
        path = Path(target)
        self.path = path if path.suffix == ".jsonl" else path / STATS_FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = _kept_lines(self.path, set(map(str, keep))) if keep else []
        text = "".join(json.dumps(line) + "\n" for line in lines)
        write_text_atomic(self.path, text, durable=False)
        for line in lines:
            if TOTALS_KEY in line:
                self._totals.add(_Totals.from_json(line[TOTALS_KEY]))
            else:
                self._kept += 1

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
        selected: Number,
        allowed: Number,
        dense_fallback_rows: Number = 0,
        output_error: Number | None = None,
        extra: dict[str, Number] | None = None,
    ) -> None:
        """Add one layer call; `selected` already counts fallback rows as fully selected.

        Numbers may be 0-d device tensors: they are kept as they are until `flush`. An
        `output_error` of None or NaN means "undefined" (the dense output was zero); an `extra`
        value of NaN means "nothing to report in this call".
        """
        values: dict[str, Number] = {
            "selected": selected,
            "allowed": allowed,
            "dense_fallback_rows": dense_fallback_rows,
        }
        if output_error is not None:
            values["output_error"] = output_error
        values.update(extra or {})
        call = _Call(dict(self._context), layer, n_queries, n_keys, self._keep_record(), values)
        self._pending.append(call)

    def _keep_record(self) -> bool:
        if self.max_records is not None and self._kept >= self.max_records:
            return False
        keep = self.sampling_factor >= 1.0 or self._rng.random() < self.sampling_factor
        self._kept += keep
        return keep

    def _settle(self) -> None:
        """Read the pending calls (one transfer per device) into lines and totals."""
        if not self._pending:
            return
        host = _to_host([call.values for call in self._pending])
        questions: dict[tuple[Any, Any], _Totals] = {}
        for call, values in zip(self._pending, host, strict=True):
            key = (call.context.get("sample_id"), call.context.get("question_index"))
            extras = {k: v for k, v in values.items() if k not in _CORE and not math.isnan(v)}
            fallback = int(values["dense_fallback_rows"])
            error = values.get("output_error", math.nan)
            density = questions.setdefault(key, _Totals()).add_call(call.layer, values)
            if call.keep:
                entry: dict[str, Any] = {
                    **call.context,
                    "layer": call.layer,
                    "n_queries": call.n_queries,
                    "n_keys": call.n_keys,
                    "density": density,
                    "dense_fallback_rows": fallback,
                }
                if self.output_error:
                    entry["output_error"] = None if math.isnan(error) else error
                entry.update(extras)
                self._lines.append(entry)
        for (sample_id, question_index), totals in questions.items():
            self._totals.add(totals)
            self._lines.append(
                {
                    "sample_id": sample_id,
                    "question_index": question_index,
                    TOTALS_KEY: totals.to_json(),
                }
            )
        self._pending.clear()

    def flush(self) -> None:
        """Settle the pending calls, append their lines to the file (if any), clear them."""
        self._settle()
        if self.path is not None and self._lines:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(line) + "\n" for line in self._lines))
        self._lines.clear()

    def records(self) -> list[dict[str, Any]]:
        """Per-call lines not yet flushed (mainly for tests)."""
        self._settle()
        return [line for line in self._lines if TOTALS_KEY not in line]

    def summary(self) -> dict[str, Any]:
        """`density` (overall weighted by allowed entries; per-layer mean of call densities),
        `output_error` (overall mean and per layer, or None when disabled), and counters."""
        self._settle()
        totals = self._totals
        layers = sorted(totals.layers.items())
        overall = totals.selected / totals.allowed if totals.allowed > 0 else 1.0
        result: dict[str, Any] = {
            "density": {
                "overall": overall,
                "per_layer": {str(layer): row[1] / row[0] for layer, row in layers},
            },
            "output_error": None,
            "dense_fallback_rows": totals.fallback_rows,
            "n_calls": int(sum(row[0] for _, row in layers)),
        }
        if self.output_error:
            error_calls = sum(row[3] for _, row in layers)
            error_sum = sum(row[2] for _, row in layers)
            result["output_error"] = {
                "overall": error_sum / error_calls if error_calls else None,
                "per_layer": {str(layer): row[2] / row[3] for layer, row in layers if row[3]},
            }
        for name, (total, count) in sorted(totals.extra.items()):
            result[name] = total / count
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


_CORE = ("selected", "allowed", "dense_fallback_rows", "output_error")


def _to_host(rows: list[dict[str, Number]]) -> list[dict[str, float]]:
    """Every value as a Python float: the tensors of each device stacked and read at once."""
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for row in rows:
        for value in row.values():
            if isinstance(value, torch.Tensor):
                by_device.setdefault(value.device, []).append(value.reshape(()))
    read: dict[torch.device, list[float]] = {
        device: torch.stack([t.to(torch.float64) for t in tensors]).tolist()
        for device, tensors in by_device.items()
    }
    positions = dict.fromkeys(read, 0)
    out = []
    for row in rows:
        converted = {}
        for name, value in row.items():
            if isinstance(value, torch.Tensor):
                converted[name] = read[value.device][positions[value.device]]
                positions[value.device] += 1
            else:
                converted[name] = float(value)
        out.append(converted)
    return out


def _kept_lines(path: Path, keep: set[str]) -> list[dict[str, Any]]:
    """Lines of the existing file that belong to a kept sample with a totals line."""
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:  # a torn last line: its question was not answered yet
            continue
        if isinstance(line, dict) and str(line.get("sample_id")) in keep:
            lines.append(line)
    totalled = {line["sample_id"] for line in lines if TOTALS_KEY in line}
    kept = [line for line in lines if line["sample_id"] in totalled]
    logger.info("%s: kept the statistics of %d answered samples", path, len(totalled))
    return kept
