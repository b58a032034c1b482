"""benchmarks/reference_hub.py: its presets are ours, and our side of a measurement runs (the
reference side needs a checkout of the public implementation, which tests do not have)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from tests.scripts import BENCHMARKS, load_benchmark_script

from sparse_attention_hub.sparse_attention import list_presets

SCRIPT = BENCHMARKS / "reference_hub.py"


def load_script() -> ModuleType:
    return load_benchmark_script("reference_hub")


def test_every_compared_preset_is_ours() -> None:
    assert set(load_script().REFERENCE) <= set(list_presets())


@pytest.mark.parametrize("mask", ["additive", "none"])
def test_our_side_runs_every_compared_preset(mask: str) -> None:
    script = load_script()
    with torch.inference_mode():
        for preset in script.REFERENCE:
            output = script.attention_call("ours", preset, 2, 96, mask)()
            assert output.shape == (1, 2, 9, 64) and torch.isfinite(output).all()


def test_a_folder_without_the_reference_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--reference", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert f"--reference must be a folder holding sparse_attention_hub/, got '{tmp_path}'" in (
        done.stderr
    )
