"""File helpers shared by every layer: atomic writes and the cache folder.

An atomic write fills a temp file in the target's folder, optionally fsyncs it (`durable`),
makes it world-readable (result trees are shared) and renames it over the target, so readers
never see half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace `path` with `text` in one rename; `durable=False` skips the fsync (status files)."""
    _write_atomic(path, text, "w", durable)


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` in one rename (a job's files copied back from a Ray actor)."""
    _write_atomic(path, data, "wb", durable)


def _write_atomic(path: Path, data: str | bytes, mode: str, durable: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding="utf-8" if mode == "w" else None) as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: Any, *, durable: bool = True) -> None:
    """`payload` as indented, key-sorted JSON (non-JSON values via `str`), atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    write_text_atomic(path, text, durable=durable)


CACHE_ENV = "SAH_CACHE_DIR"


def cache_dir(kind: str) -> Path:
    """`$SAH_CACHE_DIR/<kind>`, else `~/.cache/sparse_attention_hub/<kind>` (models, rows...)."""
    base = os.environ.get(CACHE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "sparse_attention_hub"
    return root / kind
