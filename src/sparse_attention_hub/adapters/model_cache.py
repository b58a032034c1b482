"""On-disk cache of de-quantised GGUF models: locking, atomic publication.

A GGUF file is de-quantised once (slow: every tensor is unpacked) and the dense weights are kept
as an ordinary Hugging Face directory keyed by the file's SHA-256 (`hashing.file_sha256`, which
remembers the digest of a large file while it is unchanged), so later loads are a plain
`from_pretrained(dir)`. Workers on one machine may race to build the same entry: a file lock
serialises them and the entry appears only by an atomic rename, so a reader never sees half of it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from sparse_attention_hub.files import cache_dir

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    """`$SAH_CACHE_DIR/models`, else `~/.cache/sparse_attention_hub/models`."""
    return cache_dir("models")


def ensure_cached_dir(key: str, build: Callable[[Path], None], root: Path | None = None) -> Path:
    """The cache entry `root/key`, calling `build(tmp_dir)` to create it when it is missing.

    `build` writes into a fresh temporary directory next to the entry; on success it is renamed into
    place (atomic on one filesystem), on failure it is removed and the error propagates. A lock file
    makes concurrent callers wait for the first builder instead of building twice.
    """
    root = root or cache_root()
    final = root / key
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock")):
        if final.is_dir():  # another process built it while we waited
            return final
        # a builder killed mid-way leaves its temporary directory; holding the lock, we own them
        for stale in root.glob(f".{key}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
        try:
            build(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is a normal shared folder
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    logger.info("cached model entry %s", final)
    return final
