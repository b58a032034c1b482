"""The two averages every benchmark's metrics are built from (docs/benchmarks.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd


def mean_percent(values: pd.Series | Sequence[float]) -> float | None:
    """100 x mean of the non-missing values; None when there are none (never divides by zero)."""
    series = pd.Series(values, dtype="float64").dropna()
    return None if series.empty else float(series.mean() * 100.0)


def mean_of(values: Sequence[float | None]) -> float | None:
    """Unweighted mean of the values that exist; None when none do."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None
