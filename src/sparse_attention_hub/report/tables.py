"""From the executor's tidy `results.csv` to the table a researcher reads first.

One row per (model, sparse config, benchmark, subset): the job's `overall` score (0-100) and the
share of the baseline's score it keeps (100 = as good as dense attention on that subset).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.result_files import RESULTS_CSV

KEYS = ["model", "sparse_config", "benchmark", "subset"]


def kept_table(
    results: pd.DataFrame | str | Path, baseline: str = "dense", strict: bool = True
) -> pd.DataFrame:
    """Score and `kept` (% of the baseline's score on the same model and subset) per job.

    `kept` is missing where the baseline was not run, has no score, or scored 0 (no ratio).
    Density (mean fraction of keys attended) is included when the run logged it. `strict`
    rejects a baseline name no job has (a typo); a report of a half-run tree passes False.
    """
    frame = _read(results)
    overall = frame[(frame["metric"] == "overall") & (frame["task"] == "")]
    table = overall[KEYS].assign(score=pd.to_numeric(overall["value"], errors="coerce"))
    density = frame[frame["metric"] == "density/overall"][[*KEYS, "value"]]
    table = table.merge(
        density.rename(columns={"value": "density"}), on=KEYS, how="left", validate="one_to_one"
    )
    configs = sorted(set(table["sparse_config"]))
    if (
        strict and configs and baseline not in configs
    ):  # a typo would otherwise leave every `kept` blank
        raise ConfigError(
            f"baseline {baseline!r} is not a sparse config here; available: {configs}"
        )
    base = table[table["sparse_config"] == baseline][["model", "benchmark", "subset", "score"]]
    table = table.merge(
        base.rename(columns={"score": "baseline_score"}),
        on=["model", "benchmark", "subset"],
        how="left",
    )
    ratio = table["score"] / table["baseline_score"].where(table["baseline_score"] > 0)
    table["kept"] = ratio * 100.0
    return table.sort_values(KEYS).reset_index(drop=True)


def pivot_scores(table: pd.DataFrame, value: str = "score") -> pd.DataFrame:
    """Rows (model, sparse config) x columns `benchmark/subset`, plus the mean over columns."""
    if value not in table.columns:
        raise ConfigError(f"unknown value column {value!r}; available: {', '.join(table.columns)}")
    wide = table.assign(column=table["benchmark"] + "/" + table["subset"].astype(str)).pivot_table(
        index=["model", "sparse_config"],
        columns="column",
        values=value,
        aggfunc="first",
        dropna=False,
    )
    wide.columns.name = None
    wide["mean"] = wide.mean(axis=1, skipna=True)
    return wide


def _read(results: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(results, pd.DataFrame):
        frame = results.copy()
    else:
        from sparse_attention_hub.executor.results import read_results_csv

        path = Path(results)
        if path.is_dir():
            path = path / RESULTS_CSV
        frame = read_results_csv(path)  # a foreign or malformed file is one ConfigError line
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    frame["task"] = frame["task"].fillna("").astype(str)
    return frame
