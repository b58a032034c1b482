"""Names of the files in the result tree (DESIGN.md "Result tree"), spelled once for every layer.

A job dir holds the `JOB_FILES` a run may write, plus the files a benchmark adds by name
(`Benchmark.extra_outputs`, e.g. ZeroSCROLLS leaderboard submissions), which must match one of
`EXTRA_FILE_PATTERNS`: so `job_files` finds everything a job wrote, and a stale job is re-run
from an empty dir. The result root holds the `RUN_FILES`.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

# ----- one job dir: <model>/<sparse config>/<benchmark>_<subset>/ -----------------------------
MANIFEST = "manifest.json"  # written last: the job is complete
FAILURE = "failure.json"
ERROR = "error.txt"  # the last failure's traceback
CONFIG = "config.json"  # everything needed to reproduce the job
METRICS = "metrics.json"
PREDICTIONS = "predictions.jsonl"  # one line per finished sample (mid-job resume)
RAW_RESULTS = "raw_results.csv"
ATTENTION_STATS = "attention_stats.jsonl"
LOCK_FILE = ".lock"  # held while a job runs; not a result
JOB_FILES = (MANIFEST, FAILURE, ERROR, CONFIG, METRICS, PREDICTIONS, RAW_RESULTS, ATTENTION_STATS)

LEADERBOARD = "leaderboard_{task}.json"  # ZeroSCROLLS test split: one submission per task
# What a benchmark's extra outputs may be called (glob patterns).
EXTRA_FILE_PATTERNS = (LEADERBOARD.format(task="*"),)

# ----- the result root ----------------------------------------------------------------------
RESULTS_CSV = "results.csv"
SUMMARY = "execution_summary.json"
STATUS = "status.json"
EVENTS = "events.jsonl"
RUN_FILES = (RESULTS_CSV, SUMMARY, STATUS, EVENTS)


def leaderboard_file(task: str) -> str:
    """File name of a task's leaderboard submission inside its job dir."""
    return LEADERBOARD.format(task=task)


def is_extra_file(name: str) -> bool:
    """Whether a benchmark may write `name` into a job dir besides the `JOB_FILES`."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in EXTRA_FILE_PATTERNS)


def job_files(job_dir: Path) -> list[Path]:
    """Every file (or link) a job wrote in `job_dir`: the `JOB_FILES` and the extra outputs."""
    paths = [job_dir / name for name in JOB_FILES]
    found = [path for path in paths if path.exists() or path.is_symlink()]
    if job_dir.is_dir():
        found += sorted(p for p in job_dir.iterdir() if is_extra_file(p.name))
    return found
