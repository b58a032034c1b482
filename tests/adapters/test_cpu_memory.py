"""keep_freed_memory raises glibc's thresholds once, and leaves a user's own malloc settings alone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

SCRIPT = (
    "from sparse_attention_hub.adapters.cpu_memory import keep_freed_memory as k;print(k(), k())"
)


def _run(**env: str) -> str:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    clean.pop("LD_PRELOAD", None)
    clean.update(env)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=clean, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_raises_thresholds_once_per_process() -> None:
    assert _run() == "True True"


def test_a_users_malloc_setting_wins() -> None:
    assert _run(MALLOC_TRIM_THRESHOLD_="1000000") == "False False"
