"""The result tree on disk: per-job manifest / failure files, and the run's tidy outputs.

A job is complete iff `manifest.json` exists and carries the plan's fingerprint; the manifest is
written last and atomically, so a crash anywhere before it leaves the job resumable.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparse_attention_hub.benchmark.results_io import write_json_atomic, write_text_atomic
from sparse_attention_hub.executor.failures import Failure

if TYPE_CHECKING:
    import pandas as pd

MANIFEST = "manifest.json"
FAILURE = "failure.json"
ERROR = "error.txt"
CONFIG = "config.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.jsonl"
RESULTS_CSV = "results.csv"
SUMMARY = "execution_summary.json"
# Everything a job run leaves in its dir (removed before re-running a stale job).
JOB_FILES = (
    MANIFEST,
    FAILURE,
    ERROR,
    CONFIG,
    METRICS,
    PREDICTIONS,
    "raw_results.csv",
    "attention_stats.jsonl",
)
RESULT_COLUMNS = ("model", "sparse_config", "benchmark", "subset", "task", "metric", "value")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def job_state(job_dir: Path, fingerprint: str) -> str:
    """complete / stale / failed / pending, from the files a previous run left."""
    manifest = job_dir / MANIFEST
    if manifest.exists():
        try:
            matches = read_json(manifest).get("fingerprint") == fingerprint
        except (OSError, ValueError, AttributeError):
            matches = False
        return "complete" if matches else "stale"
    if (job_dir / PREDICTIONS).exists() and (job_dir / CONFIG).exists():
        try:
            recorded = read_json(job_dir / CONFIG).get("job", {}).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded is not None and recorded != fingerprint:
            return "stale"  # partial predictions made with other parameters: never resume them
    failure = job_dir / FAILURE
    if failure.exists():
        try:
            if read_json(failure).get("fingerprint") == fingerprint:
                return "failed"
        except (OSError, ValueError, AttributeError):
            pass
    return "pending"


def changed_inputs(job_dir: Path, inputs: Mapping[str, Any]) -> list[str]:
    """Fingerprint inputs that differ from those the job dir records: why a job is stale.

    Read from the manifest, else from a partial run's config.json; [] when neither says.
    """
    for path, keys in ((job_dir / MANIFEST, ("inputs",)), (job_dir / CONFIG, ("job", "inputs"))):
        try:
            recorded = read_json(path)
            for key in keys:
                recorded = recorded[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(recorded, Mapping):
            names = set(recorded) | set(inputs)
            return sorted(n for n in names if _json(recorded.get(n)) != _json(inputs.get(n)))
    return []


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def write_manifest(job_dir: Path, record: Mapping[str, Any]) -> None:
    """The last write of a successful job; clears any failure left by an earlier attempt."""
    for name in (FAILURE, ERROR):
        (job_dir / name).unlink(missing_ok=True)
    write_json_atomic(job_dir / MANIFEST, {"status": "complete", **record})


def write_failure(job_dir: Path, fingerprint: str, attempts: list[Failure]) -> None:
    """failure.json (category, type, message per attempt) and error.txt (the last traceback)."""
    last = attempts[-1]
    write_json_atomic(
        job_dir / FAILURE,
        {
            "fingerprint": fingerprint,
            "category": last.category,
            "exc_type": last.exc_type,
            "message": last.message,
            "attempts": [a.to_dict() for a in attempts],
        },
    )
    write_text_atomic(job_dir / ERROR, last.traceback or f"{last.exc_type}: {last.message}\n")


def reset_job_dir(job_dir: Path) -> None:
    for name in JOB_FILES:
        (job_dir / name).unlink(missing_ok=True)


@dataclass
class JobRecord:
    """How one planned job ended in this run."""

    job_id: str
    model: str
    sparse_config: str
    benchmark: str
    subset: str
    state: str  # complete | failed | stale | pending (not run: interrupted or skipped)
    ran: bool = False
    attempts: int = 0
    duration_s: float | None = None
    category: str | None = None
    error: str | None = None
    timing: dict[str, float] | None = None  # the job's metrics `timing`, when it ran here


@dataclass
class ExecutionResults:
    """What `run_benchmark_matrix` returns: one record per planned job, plus run facts."""

    result_dir: Path
    records: list[JobRecord]
    wall_s: float = 0.0
    interrupted: bool = False
    run_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def by_state(self, state: str) -> list[JobRecord]:
        return [r for r in self.records if r.state == state]

    @property
    def completed(self) -> list[JobRecord]:
        return self.by_state("complete")

    @property
    def failed(self) -> list[JobRecord]:
        return self.by_state("failed")

    @property
    def ok(self) -> bool:
        return not self.interrupted and len(self.completed) == len(self.records)

    def counts(self) -> dict[str, int]:
        counts = {"planned": len(self.records), "ran": sum(r.ran for r in self.records)}
        for record in self.records:
            counts[record.state] = counts.get(record.state, 0) + 1
        return counts

    def timing_totals(self) -> dict[str, float]:
        """Each timing entry summed over the jobs that ran in this run (prefill, decode, ...)."""
        totals: dict[str, float] = {}
        for record in self.records:
            for key, value in (record.timing or {}).items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def results_frame(self) -> pd.DataFrame:
        """The tidy results.csv as a DataFrame."""
        import pandas as pd

        return pd.read_csv(self.result_dir / RESULTS_CSV, keep_default_na=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "result_dir": str(self.result_dir),
            "wall_s": self.wall_s,
            "interrupted": self.interrupted,
            "counts": self.counts(),
            "timing": self.timing_totals(),
            "failures": [asdict(r) for r in self.failed],
            "jobs": [asdict(r) for r in self.records],
            **self.extra,
        }


def flatten_metrics(metrics: Mapping[str, Any]) -> Iterator[tuple[str, str, float]]:
    """(task, metric, value) for every numeric leaf; task is '' outside `tasks`."""
    for key, value in metrics.items():
        if key == "tasks" and isinstance(value, Mapping):
            for task, entry in value.items():
                items = entry.items() if isinstance(entry, Mapping) else [("score", entry)]
                for path, number in _leaves(items):
                    yield str(task), path, number
        else:
            for path, number in _leaves([(key, value)]):
                yield "", path, number


def _leaves(items: Iterable[tuple[Any, Any]], prefix: str = "") -> Iterator[tuple[str, float]]:
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaves(value.items(), f"{path}/")
        elif (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and not math.isnan(value)
        ):
            yield path, float(value)


def write_results_csv(base: Path, records: Iterable[JobRecord]) -> Path:
    """One row per (model, sparse config, benchmark, subset, task, metric) of complete jobs."""
    rows: list[list[Any]] = []
    for record in records:
        metrics_file = base / record.job_id / METRICS
        if record.state != "complete" or not metrics_file.exists():
            continue
        for task, metric, value in flatten_metrics(read_json(metrics_file)):
            rows.append(
                [
                    record.model,
                    record.sparse_config,
                    record.benchmark,
                    record.subset,
                    task,
                    metric,
                    value,
                ]
            )
    path = base / RESULTS_CSV
    write_text_atomic(path, _csv_text([list(RESULT_COLUMNS), *rows]))
    return path


def _csv_text(rows: list[list[Any]]) -> str:
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def write_summary(base: Path, results: ExecutionResults) -> Path:
    path = base / SUMMARY
    write_json_atomic(path, results.to_dict())
    return path
