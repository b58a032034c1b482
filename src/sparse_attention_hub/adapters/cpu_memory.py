"""Keep freed CPU memory in the process, so sparse attention's temporaries do not page-fault.

Sparse attention on CPU creates and frees (B, H, Q, N) tensors of megabytes dozens of times per
layer call. glibc's malloc serves a block above its mmap threshold with fresh pages from the
kernel, and hands the top of the heap back once more than its trim threshold is free; either
way the next tensor of that size touches new pages, one page fault per 4 KiB. On our CPU box
that was a third to half of a question-prefill call (Q = 32, N = 16k; docs/methods.md §5.2).
Raising both thresholds once per process keeps freed blocks for the next tensor. Freed memory
then goes back to the OS at exit rather than at once; the peak is what it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameters, <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Blocks below this come from the heap: glibc's upper limit on 64-bit systems."""
TRIM_THRESHOLD = 1 << 30
"""Free heap kept for reuse before any is returned to the OS."""
USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "LD_PRELOAD",
)
"""Environment variables through which a user chose the allocator's behaviour; theirs wins."""

_tuned: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (once per process); True when they are raised.

    Does nothing where libc is not glibc, or where the user set one of `USER_SETTINGS`.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    chosen = [name for name in USER_SETTINGS if os.environ.get(name)]
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or chosen:
        logger.debug("malloc thresholds left as they are (%s)", chosen or platform.libc_ver())
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mmap_set = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        trim_set = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError) as exc:
        logger.debug("mallopt is not available: %s", exc)
        return False
    _tuned = bool(mmap_set and trim_set)
    logger.debug("malloc thresholds raised: %s", _tuned)
    return _tuned
