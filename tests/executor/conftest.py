"""Executor test fixtures (helpers live in `sparse_attention_hub.executor.testing`)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path
