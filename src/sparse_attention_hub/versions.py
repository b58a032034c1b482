"""Versions of the packages that change results, recorded with every job."""

from __future__ import annotations

import functools
from importlib import metadata

TRACKED = (
    "sparse-attention-hub",
    "torch",
    "transformers",
    "datasets",
    "rouge",
    "rouge-score",
    "jieba",
    "fuzzywuzzy",
    "nltk",
    "bert-score",
    "scipy",
    "gguf",
)


def package_versions() -> dict[str, str | None]:
    """A fresh copy each call (callers may add to it); the look-up itself runs once a process."""
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in TRACKED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
