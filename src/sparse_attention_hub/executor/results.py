"""The result tree on disk: per-job manifest / failure files, and the tidy outputs of the tree.

A job is complete iff `manifest.json` parses and carries the plan's fingerprint and
`metrics.json` parses; the manifest is written last and atomically, so a crash anywhere before
it leaves the job resumable. A job whose files are damaged is `corrupt` (with what is wrong):
it resumes from its predictions, and nothing intact is deleted. `results.csv` is built from the
tree (every complete job on disk), never from one run's plan.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparse_attention_hub.benchmark.results_io import write_json_atomic, write_text_atomic
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.failures import Failure
from sparse_attention_hub.result_files import (
    CONFIG,
    ERROR,
    FAILURE,
    MANIFEST,
    METRICS,
    PREDICTIONS,
    RESULTS_CSV,
    SUMMARY,
    job_files,
)

if TYPE_CHECKING:
    import pandas as pd

RESULT_COLUMNS = ("model", "sparse_config", "benchmark", "subset", "task", "metric", "value")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_json_object(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(the file's JSON object, "") or (None, what is wrong with it) — never raises."""
    try:
        record = read_json(path)
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except UnicodeDecodeError:
        return None, f"{path.name} is not UTF-8 text"
    except ValueError as exc:
        return None, f"{path.name} is not valid JSON ({exc})"
    except OSError as exc:
        return None, f"{path.name} cannot be read ({exc.strerror or exc})"
    if not isinstance(record, dict):
        return None, f"{path.name} holds a {type(record).__name__}, not a JSON object"
    return record, ""


def _recorded_fingerprint(job_dir: Path) -> str | None:
    """The fingerprint a (partial) run recorded in config.json, if it can be read."""
    config, _ = read_json_object(job_dir / CONFIG)
    job = config.get("job") if config else None
    value = job.get("fingerprint") if isinstance(job, dict) else None
    return value if isinstance(value, str) else None


def inspect_job(job_dir: Path, fingerprint: str) -> tuple[str, str]:
    """(state, what is wrong): complete / stale / corrupt / failed / pending.

    `corrupt`: the files say this job finished (or say nothing legible) with this fingerprint,
    but its manifest or metrics cannot be read. A manifest that cannot be read counts as this
    job's when config.json records the same fingerprint (or none legibly), else as stale.
    """
    manifest, problem = read_json_object(job_dir / MANIFEST)
    if manifest is not None:
        if manifest.get("fingerprint") != fingerprint:
            return "stale", ""
        _, problem = read_json_object(job_dir / METRICS)
        return ("corrupt", problem) if problem else ("complete", "")
    if (job_dir / MANIFEST).exists() or (job_dir / MANIFEST).is_symlink():
        recorded = _recorded_fingerprint(job_dir)
        if recorded is not None and recorded != fingerprint:
            return "stale", ""
        return "corrupt", problem
    if (job_dir / PREDICTIONS).exists() and (job_dir / CONFIG).exists():
        recorded = _recorded_fingerprint(job_dir)
        if recorded is not None and recorded != fingerprint:
            return "stale", ""  # partial predictions made with other parameters: never resume them
    failure, _ = read_json_object(job_dir / FAILURE)
    if failure is not None and failure.get("fingerprint") == fingerprint:
        return "failed", ""
    return "pending", ""


def job_state(job_dir: Path, fingerprint: str) -> str:
    """complete / stale / corrupt / failed / pending, from the files a previous run left."""
    return inspect_job(job_dir, fingerprint)[0]


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
    """Remove every file a run of this job wrote (`--rerun-stale`: the job starts afresh)."""
    for path in job_files(job_dir):
        path.unlink(missing_ok=True)


@dataclass
class JobRecord:
    """How one planned job ended in this run."""

    job_id: str
    model: str
    sparse_config: str
    benchmark: str
    subset: str
    state: str  # complete | failed | stale | corrupt | pending (not run: interrupted or skipped)
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
        return read_results_csv(self.result_dir / RESULTS_CSV)

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


def complete_jobs(base: Path) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(job_id, manifest, metrics) of every complete job under `base`, sorted by job id.

    Walks `<model>/<sparse config>/<benchmark>_<subset>/` without following symlinks; a job whose
    manifest or metrics cannot be read is skipped (the plan reports it as corrupt).
    """
    for model_dir in _real_dirs(base):
        for sparse_dir in _real_dirs(model_dir):
            for job_dir in _real_dirs(sparse_dir):
                manifest, _ = read_json_object(job_dir / MANIFEST)
                if manifest is None or manifest.get("status") != "complete":
                    continue
                metrics, _ = read_json_object(job_dir / METRICS)
                if metrics is not None and all(
                    isinstance(manifest.get(key), str) for key in RESULT_COLUMNS[:4]
                ):
                    yield job_dir.relative_to(base).as_posix(), manifest, metrics


def _real_dirs(path: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError:
        return []
    return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False) and e.name[0] != "."]


def write_results_csv(base: Path, exclude: Iterable[str] = ()) -> Path:
    """One row per (model, sparse config, benchmark, subset, task, metric) of every complete
    job in the tree, except `exclude` (job ids the current plan found stale or corrupt)."""
    skip = set(exclude)
    rows: list[list[Any]] = []
    for job_id, manifest, metrics in complete_jobs(base):
        if job_id in skip:
            continue
        keys = [manifest[key] for key in RESULT_COLUMNS[:4]]
        for task, metric, value in flatten_metrics(metrics):
            rows.append([*keys, task, metric, value])
    path = base / RESULTS_CSV
    write_text_atomic(path, _csv_text([list(RESULT_COLUMNS), *rows]))
    return path


def read_results_csv(path: Path) -> pd.DataFrame:
    """results.csv as a frame; a ConfigError naming the file when it is not one of ours."""
    import pandas as pd

    try:
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().strip()
        frame = pd.read_csv(path, keep_default_na=False, dtype={"subset": str, "task": str})
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; run `sah run` first") from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path} is not a results.csv written by `sah run`: {reason}") from None
    if header != ",".join(RESULT_COLUMNS):
        raise ConfigError(
            f"{path} is not a results.csv written by `sah run`: its header is {header[:80]!r}, "
            f"expected {','.join(RESULT_COLUMNS)!r}"
        )
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame


def _csv_text(rows: list[list[Any]]) -> str:
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def write_summary(base: Path, results: ExecutionResults) -> Path:
    path = base / SUMMARY
    write_json_atomic(path, results.to_dict())
    return path
