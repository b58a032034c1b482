"""Staging a job's files away from the result tree and sending back what changed (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparse_attention_hub.executor.backends.staging import (
    APPEND,
    DELETE,
    REPLACE,
    StagedDir,
    apply,
    snapshot,
)


def test_round_trip_keeps_the_driver_dir_equal_to_the_staging_dir(tmp_path: Path) -> None:
    driver = tmp_path / "driver"
    driver.mkdir()
    (driver / "predictions.jsonl").write_text('{"sample_id": "1"}\n')
    (driver / "failure.json").write_text("{}")
    (driver / ".lock").write_text("")
    (driver / ".metrics.json.abc.tmp").write_text("half")
    seeds = snapshot(driver)
    assert set(seeds) == {"predictions.jsonl", "failure.json"}  # no lock, no temp file

    staged = StagedDir(tmp_path / "stage", seeds)
    assert staged.changes() == []
    with open(staged.dir / "predictions.jsonl", "a") as handle:
        handle.write('{"sample_id": "2"}\n{"sample_id": "3"')  # the last line is still torn
    (staged.dir / "config.json").write_text('{"a": 1}')
    ops = staged.changes()
    assert (("predictions.jsonl", APPEND, b'{"sample_id": "2"}\n')) in ops
    assert ("config.json", REPLACE, b'{"a": 1}') in ops
    apply(driver, ops)
    with open(staged.dir / "predictions.jsonl", "a") as handle:
        handle.write("}\n")
    (staged.dir / "failure.json").unlink()  # what write_manifest does
    (staged.dir / "manifest.json").write_text('{"status": "complete"}')
    (staged.dir / "metrics.json").write_text("{}")
    middle = staged.changes()
    assert "manifest.json" not in [name for name, _, _ in middle]  # only in the final send
    assert ("failure.json", DELETE, b"") in middle
    apply(driver, middle)
    final = staged.changes(final=True)
    assert final[-1][0] == "manifest.json"
    apply(driver, final)
    assert snapshot(driver) == snapshot(staged.dir)
    ids = [json.loads(line)["sample_id"] for line in (driver / "predictions.jsonl").open()]
    assert ids == ["1", "2", "3"]


def test_a_truncated_jsonl_file_is_replaced_whole(tmp_path: Path) -> None:
    staged = StagedDir(tmp_path / "stage", {"predictions.jsonl": b'{"a": 1}\n{"b"'})
    (staged.dir / "predictions.jsonl").write_bytes(b'{"a": 1}\n')  # read_predictions cut it
    assert staged.changes() == [("predictions.jsonl", REPLACE, b'{"a": 1}\n')]


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".."])
def test_nothing_is_written_outside_the_job_dir(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        apply(tmp_path / "job", [(name, REPLACE, b"x")])
    assert not (tmp_path / "escape").exists()


def test_a_symlink_in_the_job_dir_is_not_written_through(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    outside = tmp_path / "outside.jsonl"
    outside.write_text("")
    (job / "predictions.jsonl").symlink_to(outside)
    with pytest.raises(ValueError, match="symlink"):
        apply(job, [("predictions.jsonl", APPEND, b"x\n")])
    assert outside.read_text() == ""
