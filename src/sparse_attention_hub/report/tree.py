"""Every job on disk, read from the result tree alone (no experiment file, no plan).

A report must work on a tree that is still running, was interrupted, or has damaged files, so each
job dir gets a state and, where it is not `complete`, the reason a reader needs:
complete / failed / corrupt / stale / running / partial (and `missing` for grid cells with no dir).
Nothing here writes to the tree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sparse_attention_hub.executor.results import RESULT_COLUMNS, flatten_metrics
from sparse_attention_hub.result_files import (
    CONFIG,
    FAILURE,
    JOB_FILES,
    MANIFEST,
    METRICS,
    PREDICTIONS,
    STATUS,
    SUMMARY,
)

REPORT_DIR = "report"
STATES = ("complete", "failed", "corrupt", "stale", "running", "partial", "missing")


@dataclass
class JobCell:
    """One job dir (or one missing grid cell): where it stands and what it recorded."""

    model: str
    sparse_config: str
    benchmark: str
    subset: str
    state: str
    reason: str = ""
    path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str:
        return f"{self.benchmark}/{self.subset}"

    @property
    def job_id(self) -> str:
        return f"{self.model}/{self.sparse_config}/{self.column}"


def scan_tree(base: str | Path) -> list[JobCell]:
    """One `JobCell` per job dir under `base/<model>/<config>/<benchmark>_<subset>/`."""
    base = Path(base)
    if not base.is_dir():
        raise FileNotFoundError(f"{base} is not a directory")
    summary = _last_run_jobs(base)
    running = _running_jobs(base)
    cells = []
    for model_dir, config_dir, job_dir in _job_dirs(base):
        relative = f"{model_dir.name}/{config_dir.name}/{job_dir.name}"
        cells.append(_read_job(job_dir, relative, summary.get(relative, {}), running))
    _name_models_consistently(cells)
    return sorted(cells, key=lambda c: (c.model, c.sparse_config, c.benchmark, c.subset))


def tidy_frame(cells: list[JobCell]) -> pd.DataFrame:
    """The rows results.csv would have, from the complete jobs on disk now."""
    rows = [
        [cell.model, cell.sparse_config, cell.benchmark, cell.subset, task, metric, value]
        for cell in cells
        if cell.state == "complete"
        for task, metric, value in flatten_metrics(cell.metrics)
    ]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).astype({"subset": str, "task": str})


def _job_dirs(base: Path) -> Iterator[tuple[Path, Path, Path]]:
    """Real directories (never symlinks) three levels down that hold at least one job file."""
    for model_dir in _subdirs(base):
        if model_dir.name == REPORT_DIR:
            continue
        for config_dir in _subdirs(model_dir):
            for job_dir in _subdirs(config_dir):
                if any((job_dir / name).exists() for name in JOB_FILES):
                    yield model_dir, config_dir, job_dir


def _subdirs(path: Path) -> list[Path]:
    with os.scandir(path) as entries:
        found = [
            Path(e.path)
            for e in entries
            if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
        ]
    return sorted(found)


def _read_job(
    job_dir: Path, relative: str, last_run: Mapping[str, Any], running: Mapping[str, str]
) -> JobCell:
    model, sparse_config, dir_name = relative.split("/")
    cell = JobCell(model, sparse_config, dir_name, "", state="partial", path=job_dir)
    problems: list[str] = []
    cell.config = _load_object(job_dir / CONFIG, problems)
    if (job_dir / MANIFEST).exists():
        cell.manifest = _load_object(job_dir / MANIFEST, problems)
        cell.metrics = _load_object(job_dir / METRICS, problems)
        if problems:
            cell.state, cell.reason = "corrupt", "; ".join(problems)
        elif last_run.get("state") == "stale":
            cell.state = "stale"
            cell.reason = f"stale: {last_run.get('error') or 'its parameters changed'}"
            cell.reason += " (sah run --rerun-stale replaces it)"
        else:
            cell.state = "complete"
    elif (job_dir / FAILURE).exists():
        failure = _load_object(job_dir / FAILURE, problems)
        if problems:
            cell.state, cell.reason = "corrupt", "; ".join(problems)
        else:
            cell.state = "failed"
            cell.reason = (
                f"[{failure.get('category', '?')}] {failure.get('exc_type', '')}: "
                f"{failure.get('message', '')} (sah run --rerun-failed retries it)"
            )
    else:
        answers = count_lines(job_dir / PREDICTIONS)
        if relative in running:
            cell.state, cell.reason = "running", f"{running[relative]}; {answers} answer(s) saved"
        else:
            cell.reason = f"unfinished: {answers} answer(s) saved; sah run resumes it"
    cell.benchmark, cell.subset = _benchmark_and_subset(dir_name, cell.manifest, cell.config)
    return cell


def _load_object(path: Path, problems: list[str]) -> dict[str, Any]:
    """A JSON object from `path`; a missing or damaged file adds a problem and gives {}."""
    if not path.exists():
        if path.name != CONFIG:  # config.json is informative only
            problems.append(f"{path.name} is missing")
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"{path.name} does not parse ({type(exc).__name__}: {exc})")
        return {}
    if not isinstance(value, dict):
        problems.append(f"{path.name} is not a JSON object")
        return {}
    return value


def count_lines(path: Path) -> int:
    """Non-empty lines of a file (0 when absent): answers saved in predictions.jsonl."""
    if not path.exists():
        return 0
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def _benchmark_and_subset(
    dir_name: str, manifest: Mapping[str, Any], config: Mapping[str, Any]
) -> tuple[str, str]:
    """From the job's own records; else split the dir name at a registered benchmark's name."""
    if manifest.get("benchmark") and manifest.get("subset") is not None:
        return str(manifest["benchmark"]), str(manifest["subset"])
    subsets = config.get("subsets")
    if config.get("benchmark") and isinstance(subsets, list) and len(subsets) == 1:
        return str(config["benchmark"]), str(subsets[0])
    from sparse_attention_hub.benchmark import list_benchmarks

    for name in sorted(list_benchmarks(), key=len, reverse=True):
        if dir_name.startswith(f"{name}_"):
            return name, dir_name[len(name) + 1 :]
    return dir_name, ""


def _name_models_consistently(cells: list[JobCell]) -> None:
    """A model dir holds a sanitized name; show the name its jobs recorded, for all of them."""
    names: dict[str, str] = {}
    for cell in cells:
        recorded = cell.manifest.get("model") or cell.config.get("model")
        if recorded and cell.model not in names:
            names[cell.model] = str(recorded)
    for cell in cells:
        cell.model = names.get(cell.model, cell.model)


def _last_run_jobs(base: Path) -> dict[str, dict[str, Any]]:
    """execution_summary.json's job records by job id ({} when absent or unreadable)."""
    try:
        summary = json.loads((base / SUMMARY).read_text(encoding="utf-8"))
        return {str(job["job_id"]): job for job in summary.get("jobs", [])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _running_jobs(base: Path) -> dict[str, str]:
    """Job id -> 'running on worker N' for the jobs status.json says are in progress."""
    try:
        status = json.loads((base / STATUS).read_text(encoding="utf-8"))
        workers = [] if status.get("interrupted") else status.get("workers", [])
        return {
            str(
                w["job"]
            ): f"running on worker {w.get('worker')} (status.json, {status.get('updated_at')})"
            for w in workers
            if w.get("job")
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}
