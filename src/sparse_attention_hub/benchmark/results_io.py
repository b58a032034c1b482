"""Durable result files: appended predictions, atomic JSON, round-trippable CSV."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

# Re-exported: the benchmark and executor layers write their JSON through this module.
from sparse_attention_hub.files import write_json_atomic as write_json_atomic
from sparse_attention_hub.files import write_text_atomic

logger = logging.getLogger(__name__)

# Columns read back as text whatever they hold (ids too: "007" is not the number 7).
TEXT_COLUMNS = (
    "sample_id",
    "_id",
    "id",
    "prediction",
    "context",
    "question",
    "answer_prefix",
    "task",
    "subset",
)


def is_score_column(name: str) -> bool:
    """Per-sample scores: numbers even when some (or all) cells are blank."""
    return name == "score" or name.startswith("score_")


PredictionKey = tuple[str, str]
"""(subset, sample_id): ids are unique within a subset, not across subsets (LongBench-v2)."""


def prediction_key(subset: Any, sample_id: Any) -> PredictionKey:
    return (str(subset), str(sample_id))


def read_predictions(path: Path) -> dict[PredictionKey, dict[str, Any]]:
    """Finished samples by (subset, sample_id); a later line for the same key wins.

    A torn last line (crash mid-write) is cut off so appends stay valid.
    """
    if not path.exists():
        return {}
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        keep = raw.rfind(b"\n") + 1
        logger.warning("%s ends in a partial line; dropping %d bytes", path, len(raw) - keep)
        with open(path, "r+b") as handle:
            handle.truncate(keep)
        raw = raw[:keep]
    done: dict[PredictionKey, dict[str, Any]] = {}
    for line in raw.decode("utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        done[prediction_key(record.get("subset", ""), record["sample_id"])] = record
    return done


def append_predictions(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append one JSON line per finished sample and flush it to disk before returning."""
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def encode_cell(value: Any) -> Any:
    """Lists and dicts become JSON text so a CSV round-trips them exactly."""
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, ensure_ascii=False)
    return value


def write_raw_results(path: Path, frame: pd.DataFrame, *, durable: bool = True) -> None:
    """Every sample with its prediction (and score once scored); list cells JSON-encoded.

    `durable=False` skips the fsync: for a copy whose content is durable elsewhere."""
    encoded = frame.copy()
    for column in encoded.columns:
        if encoded[column].dtype == object:
            encoded[column] = [encode_cell(v) for v in encoded[column]]
    write_text_atomic(path, encoded.to_csv(index=False), durable=durable)


# List-valued columns of the row schema, JSON-encoded in our CSV files.
JSON_LIST_COLUMNS = ("answers", "all_classes")


def read_raw_results(path: Path, json_columns: Iterable[str] = JSON_LIST_COLUMNS) -> pd.DataFrame:
    """Read `raw_results.csv` back, decoding the JSON-encoded list columns (a blank cell -> []).

    Text is never parsed as missing (a prediction `"None"` or `""` stays text); a score column
    (`score`, `score_*`) with blank cells (a task whose scorer failed) comes back as floats with
    NaN. Other columns keep what `read_csv` infers.
    """
    json_columns = tuple(json_columns)
    frame = pd.read_csv(path, keep_default_na=False, dtype=dict.fromkeys(TEXT_COLUMNS, str))
    for column in frame.columns:
        if column in json_columns:
            frame[column] = [
                json.loads(v) if isinstance(v, str) and v else [] for v in frame[column]
            ]
        elif is_score_column(column) and not pd.api.types.is_numeric_dtype(frame[column]):
            blank = frame[column] == ""
            numbers = pd.to_numeric(frame[column].where(~blank), errors="coerce")
            if numbers.notna().sum() == (~blank).sum():
                frame[column] = numbers
    return frame
