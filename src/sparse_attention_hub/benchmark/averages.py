"""What every benchmark's metrics are built from (docs/benchmarks.md §0.5): each task's rows,
scored task by task, and the two averages."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)


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


def score_by_task(
    results: pd.DataFrame, score_task: Callable[[str, pd.DataFrame], pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """(the rows of the tasks scored, with their per-sample columns; every row, sorted, with a
    NaN score where its task's scorer failed; task -> error message).

    One task's scorer must not cost the others their scores; raw_results keeps every prediction.
    """
    scored_parts: list[pd.DataFrame] = []
    failed_parts: list[pd.DataFrame] = []
    errors: dict[str, str] = {}
    for task, rows in by_task(results):
        try:
            per_sample = score_task(str(task), rows)
            if not per_sample.index.equals(rows.index):  # else assign() would fill NaN
                raise ValueError(f"score_task({task!r}) returned a frame not indexed like rows")
        except Exception as exc:
            logger.exception("scoring task %s failed", task)
            errors[str(task)] = f"{type(exc).__name__}: {exc}"
            failed_parts.append(rows.assign(score=float("nan")))
            continue
        scored_parts.append(rows.assign(**{c: per_sample[c] for c in per_sample.columns}))
    if not scored_parts:
        scored = results.iloc[0:0].assign(score=[])
    else:  # a single part is a new frame already: no concat (a copy) needed
        scored = scored_parts[0] if len(scored_parts) == 1 else pd.concat(scored_parts)
    every_row = (pd.concat([scored, *failed_parts]) if failed_parts else scored).sort_index()
    return scored, every_row, errors
