"""A job's files away from the result tree: seed a staging dir, send back what changed.

The Ray backend needs no shared filesystem: an actor runs its job in a node-local staging dir
seeded with the files the job dir already holds (a partial `predictions.jsonl` resumes per
sample), and sends the driver what changed since the last send as a list of operations. `.jsonl`
files are append-only (whole new lines go as appends, so the driver's copy is never torn); other
files are replaced whole; files the job removed (an old `failure.json`) are deleted. The manifest
goes only in the final send, and last, so a job is complete on the driver only once everything
else is there.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sparse_attention_hub.files import write_bytes_atomic
from sparse_attention_hub.result_files import MANIFEST

APPEND, REPLACE, DELETE = "append", "replace", "delete"
Op = tuple[str, str, bytes]  # (file name, APPEND | REPLACE | DELETE, bytes)


def is_job_file(path: Path) -> bool:
    """A regular file a job owns: not a lock, not an atomic write's temp file, not a link."""
    name = path.name
    return path.is_file() and not path.is_symlink() and not name.endswith((".lock", ".tmp"))


def snapshot(job_dir: Path) -> dict[str, bytes]:
    """Every file of the job dir by name (what a staging dir is seeded with)."""
    if not job_dir.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(job_dir.iterdir()) if is_job_file(p)}


@dataclass
class _Sent:
    size: int
    mtime_ns: int


class StagedDir:
    """One job's staging dir and what the driver already has of it."""

    def __init__(self, stage_dir: Path, files: dict[str, bytes]) -> None:
        shutil.rmtree(stage_dir, ignore_errors=True)
        stage_dir.mkdir(parents=True)
        for name, data in files.items():
            (stage_dir / check_name(name)).write_bytes(data)
        self.dir = stage_dir
        self.sent = {name: self._stat(name) for name in files}

    def _stat(self, name: str) -> _Sent:
        stat = (self.dir / name).stat()
        return _Sent(stat.st_size, stat.st_mtime_ns)

    def changes(self, final: bool = False) -> list[Op]:
        """What changed since the last call; the manifest only when `final`, and then last."""
        ops: list[Op] = []
        present = {p.name: p for p in sorted(self.dir.iterdir()) if is_job_file(p)}
        for name in [n for n in self.sent if n not in present]:
            ops.append((name, DELETE, b""))
            del self.sent[name]
        for name, path in present.items():
            if name == MANIFEST:
                continue
            op = self._change(name, path)
            if op is not None:
                ops.append(op)
        if final and MANIFEST in present:
            ops.append((MANIFEST, REPLACE, present[MANIFEST].read_bytes()))
        return ops

    def _change(self, name: str, path: Path) -> Op | None:
        now = self._stat(name)
        before = self.sent.get(name)
        if before == now:
            return None
        start = before.size if before is not None else 0  # a new file starts empty
        if name.endswith(".jsonl") and now.size >= start:
            with open(path, "rb") as handle:
                handle.seek(start)
                tail = handle.read(now.size - start)
            whole = tail[: tail.rfind(b"\n") + 1]  # complete lines only; the rest comes later
            if not whole:
                return None
            self.sent[name] = _Sent(start + len(whole), now.mtime_ns)
            return (name, APPEND, whole)
        data = path.read_bytes()
        self.sent[name] = _Sent(len(data), now.mtime_ns)
        return (name, REPLACE, data)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def apply(job_dir: Path, ops: list[Op]) -> None:
    """Make the driver's job dir follow the staging dir: appends flushed to disk, replacements
    atomic (a reader never sees half a file), in the order given (the manifest comes last)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    for name, kind, data in ops:
        path = job_dir / check_name(name)
        if path.is_symlink():
            raise ValueError(f"refusing to write through the symlink {path}")
        if kind == APPEND:
            with open(path, "ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        elif kind == REPLACE:
            write_bytes_atomic(path, data)
        elif kind == DELETE:
            path.unlink(missing_ok=True)
        else:
            raise ValueError(f"unknown staging operation {kind!r} for {name}")


def check_name(name: str) -> str:
    """A plain file name: nothing from an actor is written outside its job dir."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")
    return name
