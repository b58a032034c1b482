"""Loading benchmark rows from the hub or a local copy, and normalising them to one schema."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparse_attention_hub.benchmark.results_io import read_raw_results
from sparse_attention_hub.errors import DatasetLoadError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = (
    "sample_id",
    "context",
    "question",
    "answer_prefix",
    "answers",
    "max_new_tokens",
    "task",
)
LOCAL_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")


def to_python(value: Any) -> Any:
    """Turn numpy arrays / scalars (as parquet gives them) into plain Python values, recursively."""
    if isinstance(value, np.ndarray):
        return [to_python(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if isinstance(value, dict):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def as_str_list(value: Any) -> list[str]:
    """Normalise an answer cell (str, list, array, None) to `list[str]`.

    A string is one answer, whatever it looks like (`"[1, 2]"` stays one answer): JSON-encoded
    list columns are decoded where they are known to be encoded (`read_raw_results`, CSV copies).
    """
    value = to_python(value)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def read_local(path: Path) -> pd.DataFrame:
    """Read one local data file in the hub schema."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    if path.suffix == ".json":
        return pd.read_json(path, dtype=False)
    if path.suffix == ".csv":  # CSV cannot hold lists: list columns are JSON text, as we write it
        return read_raw_results(path)
    raise DatasetLoadError(f"cannot read {path}: expected one of {', '.join(LOCAL_SUFFIXES)}")


def find_local_file(data_path: Path, names: Iterable[str]) -> Path:
    """The first `<data_path>/<name><suffix>` that exists (or `data_path` itself if it is a file)."""
    if data_path.is_file():
        return data_path
    tried = []
    for name in names:
        for suffix in LOCAL_SUFFIXES:
            candidate = data_path / f"{name}{suffix}"
            tried.append(candidate.name)
            if candidate.exists():
                return candidate
    raise DatasetLoadError(f"no local data file in {data_path}; looked for {', '.join(tried)}")


def load_table(
    hub_id: str,
    config_name: str | None,
    split: str,
    data_path: str | Path | None,
    local_names: Iterable[str],
) -> pd.DataFrame:
    """Rows from a local copy when `data_path` is given, else from the Hugging Face hub."""
    if data_path is not None:
        return read_local(find_local_file(Path(data_path), local_names))
    try:
        import datasets

        dataset = datasets.load_dataset(hub_id, config_name, split=split)
    except Exception as exc:  # hub / network / schema problems all surface as one load error
        raise DatasetLoadError(
            f"could not load {hub_id!r} config {config_name!r} split {split!r}: "
            f"{type(exc).__name__}: {exc}. Pass a local copy with data_path=..."
        ) from exc
    frame: pd.DataFrame = dataset.to_pandas()
    return frame


def normalise_rows(
    frame: pd.DataFrame,
    subset: str,
    *,
    task: str | None = None,
    id_columns: tuple[str, ...] = ("_id", "id"),
) -> pd.DataFrame:
    """Apply the shared row schema: python values, `answers` as list[str], stable `sample_id`."""
    frame = frame.reset_index(drop=True).copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = [to_python(v) for v in frame[column]]
    if "answers" not in frame.columns:
        source = frame["answer"] if "answer" in frame.columns else pd.Series([None] * len(frame))
        frame["answers"] = [as_str_list(v) for v in source]
    else:
        frame["answers"] = [as_str_list(v) for v in frame["answers"]]
    for column, default in (("question", ""), ("answer_prefix", "")):
        if column not in frame.columns:
            frame[column] = default
        frame[column] = frame[column].fillna(default).astype(str)
    if task is not None or "task" not in frame.columns:
        frame["task"] = task if task is not None else subset
    frame["subset"] = subset
    id_column = next((c for c in id_columns if c in frame.columns), None)
    if id_column is not None:
        frame["sample_id"] = frame[id_column].astype(str)
    else:
        frame["sample_id"] = [f"{subset}:{i}" for i in range(len(frame))]
    if "max_new_tokens" in frame.columns:
        frame["max_new_tokens"] = frame["max_new_tokens"].astype(int)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetLoadError(f"subset {subset!r} is missing columns {missing}")
    return frame
