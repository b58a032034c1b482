"""Fixtures of the benchmark-base and synthetic-benchmark tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def synthetic_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private `SAH_CACHE_DIR`, so generated rows never touch the user's cache."""
    monkeypatch.setenv("SAH_CACHE_DIR", str(tmp_path / "sah_cache"))
    return tmp_path / "sah_cache" / "ruler_synthetic"
