"""Workers never run the user's main module: stdin and a script without a main guard both work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
from pathlib import Path
from sparse_attention_hub.executor import BenchmarkExecutor, spec_from_dict
from sparse_attention_hub.executor.testing import experiment

base = Path({base!r})
with open(base / "main_runs.log", "a") as log:  # once per run of this module
    log.write("run\\n")
spec = spec_from_dict(experiment(base))
results = BenchmarkExecutor.from_spec(spec, progress=False).run(spec)
print(json.dumps(results.counts()))
"""


def check(base: Path, completed: subprocess.CompletedProcess[str]) -> None:
    assert completed.returncode == 0, completed.stderr[-2000:]
    counts = json.loads(completed.stdout.strip().splitlines()[-1])
    assert counts["complete"] == 1 and counts["planned"] == 1
    assert (base / "main_runs.log").read_text() == "run\n"  # no worker ran the script again


def test_executor_started_from_stdin(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-"],
        input=SCRIPT.format(base=str(tmp_path)),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    check(tmp_path, completed)


def test_executor_started_from_a_script_without_main_guard(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(SCRIPT.format(base=str(tmp_path)))
    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    check(tmp_path, completed)
