"""What every benchmark's metrics are built from (docs/benchmarks.md §0.5): each task's rows,
and the two averages."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd


def mean_percent(values: pd.Series | Sequence[float]) -> float | None:
    """100 x mean of the non-missing values; None when there are none (never divides by zero)."""
    series = pd.Series(values, dtype="float64").dropna()
    return None if series.empty else float(series.mean() * 100.0)


def mean_of(values: Sequence[float | None]) -> float | None:
    """Unweighted mean of the values that exist; None when none do."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None


def by_task(frame: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    """(task, a copy of its rows) in order of first appearance, exactly as
    `frame.groupby("task", sort=False)` gives them (rows without a task in none). A frame of
    one task, a job's usual case, skips the grouping, which costs more than scoring a small job.
    """
    tasks = frame["task"]
    if len(frame) and tasks.notna().all() and tasks.nunique() == 1:
        return [(tasks.iloc[0], frame.copy())]
    return list(frame.groupby("task", sort=False))
