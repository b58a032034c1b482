"""Content hashes, written once: SHA-256 of canonical JSON, and SHA-256 of a file's bytes.

Fingerprints (configs, jobs), random seeds and cache keys are all `json_sha256` of something.
Values already on disk depend on the exact bytes hashed, so the two spellings in use stay:
fingerprints hash compact JSON; the per-call seeds (sparse_attention/state.py), the synthetic
rows' cache keys and tokenizer fingerprints were made with `json.dumps`' default spacing
(`compact=False`), and tokenizer vocabularies keep non-ASCII text as is (`ascii_only=False`).
Changing either changes seeds, samples, and which results on disk count as complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.files import cache_dir, write_text_atomic

logger = logging.getLogger(__name__)

# Files at least this large have their digest remembered (hashing 1 MiB takes about a millisecond,
# a 100 MB model noticeably longer, and workers hash the same model on every load).
MEMO_MIN_BYTES = 1 << 20


def canonical_json(payload: Any, *, compact: bool = True, ascii_only: bool = True) -> str:
    """Key-sorted JSON text of `payload`; values JSON cannot hold are written with `str`."""
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(
        payload, sort_keys=True, separators=separators, ensure_ascii=ascii_only, default=str
    )


def json_sha256(payload: Any, *, compact: bool = True, ascii_only: bool = True) -> str:
    """Hex SHA-256 of `canonical_json(payload, ...)` (UTF-8)."""
    text = canonical_json(payload, compact=compact, ascii_only=ascii_only)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path, memo_dir: Path | None = None) -> str:
    """Hex SHA-256 of a file's bytes; a missing file is a ConfigError naming it.

    The digest of a file of `MEMO_MIN_BYTES` or more is remembered in a small JSON record under
    `memo_dir` (default: the `hashes` cache) by (real path, size, mtime), and reused while the
    file is unchanged. A memo that cannot be written costs time, never the digest.
    """
    real = Path(path).resolve()
    if not real.is_file():
        raise ConfigError(f"file {str(path)!r} does not exist")
    stat = real.stat()
    if stat.st_size < MEMO_MIN_BYTES:
        return _sha256_of_bytes(real)
    key = {"path": str(real), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record_path = (memo_dir or cache_dir("hashes")) / f"{json_sha256(str(real))[:32]}.json"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if {name: record[name] for name in key} == key:
            return str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no record yet, or an unreadable one: hash again
    digest = _sha256_of_bytes(real)
    try:
        write_text_atomic(record_path, json.dumps({**key, "sha256": digest}), durable=False)
    except OSError as exc:
        logger.warning("could not remember the SHA-256 of %s at %s: %s", real, record_path, exc)
    return digest


def _sha256_of_bytes(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
