"""The fault-injection soak, short and seed-fixed: a worker SIGKILL and a driver SIGKILL round."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).parents[2] / "benchmarks" / "soak.py"


def test_short_soak_loses_nothing_and_touches_nothing_outside() -> None:
    completed = subprocess.run(
        [sys.executable, str(SOAK), "--rounds", "2", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = completed.stdout
    assert completed.returncode == 0, out + completed.stderr[-3000:]
    assert "worker_sigkill 1" in out and "driver_sigkill 1" in out
    assert "jobs lost: 0" in out
    assert "samples answered twice: 0" in out
    assert "files outside touched: 0" in out
