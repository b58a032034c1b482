"""Atomic writes: whole files only, readable by collaborators, nothing left behind on failure."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from sparse_attention_hub.files import write_json_atomic, write_text_atomic


@pytest.mark.parametrize("durable", [True, False])
def test_writes_replace_the_file_and_are_world_readable(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "deep" / "status.json"
    write_json_atomic(path, {"b": 1, "a": [1, 2]}, durable=durable)
    write_json_atomic(path, {"b": 2}, durable=durable)
    assert json.loads(path.read_text()) == {"b": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_text_atomic(path, "old")
    with pytest.raises(TypeError):
        write_text_atomic(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
