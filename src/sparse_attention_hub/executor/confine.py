"""Nothing the executor writes or deletes may resolve outside the result root.

A job dir, a model or config dir, or a file in them that is a symlink leading out of the root
would make a run write (and `--rerun-stale` delete) files elsewhere; such paths are refused
with a message naming the link. A path that exists but is not a directory, or is not writable,
is refused the same way, before any worker starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from sparse_attention_hub.errors import ConfigError


class OutsideResultDir(ConfigError):
    """A path the executor would write or delete leads outside the result root."""


def is_inside(root: Path, path: Path) -> bool:
    """Whether `path`, with every symlink followed, lies in `root` (also resolved)."""
    return path.resolve().is_relative_to(root.resolve())


def path_problems(root: Path, job_dir: Path, files: Iterable[str] = ()) -> list[str]:
    """Why the executor may not work in `job_dir` (under `root`); [] when it may.

    Checks every existing component from `root` down (a symlink out of the root, a file where a
    dir belongs, a dir this process cannot write) and the named `files` in `job_dir`.
    """
    problems: list[str] = []
    relative = job_dir.relative_to(root)
    current = root
    for part in relative.parts:
        current = current / part
        if current.is_symlink() and not is_inside(root, current):
            return [
                f"{current} is a symlink to {os.readlink(current)}, outside the result dir "
                f"{root}; remove the link (results are written only inside the result dir)"
            ]
        if not current.exists():
            return []
        if not current.is_dir():
            return [f"{current} exists and is not a directory; move it out of the result dir"]
        if not os.access(current, os.W_OK | os.X_OK):
            problems.append(f"{current} is not writable; fix its permissions")
            return problems
    for name in files:
        path = job_dir / name
        if path.is_symlink() and not is_inside(root, path):
            problems.append(
                f"{path} is a symlink to {os.readlink(path)}, outside the result dir {root}; "
                "remove the link"
            )
    return problems


def job_root(job: Any) -> Path:
    """The result root of a planned job: its dir minus the job id's components."""
    return Path(job.result_dir).parents[len(PurePosixPath(job.job_id).parts) - 1]


def check_inside(root: Path, job_dir: Path, files: Iterable[str] = ()) -> None:
    """Raise OutsideResultDir (a ConfigError) naming the first problem `path_problems` finds."""
    problems = path_problems(root, job_dir, files)
    if problems:
        raise OutsideResultDir(problems[0])
