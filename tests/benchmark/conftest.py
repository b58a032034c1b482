"""Fixtures of the benchmark-base and synthetic-benchmark tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def synthetic_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private `SAH_CACHE_DIR`, so generated rows never touch the user's cache."""
    monkeypatch.setenv("SAH_CACHE_DIR", str(tmp_path / "sah_cache"))
    return tmp_path / "sah_cache" / "ruler_synthetic"


SMALL = 1024  # below 4096: the small-target variants (5-line steps, cwe 6/1 repeats)
LARGE = 4096


@pytest.fixture(scope="session")
def synthetic_rows(chat_tokenizer: Any) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Rows of every task at 1024 tokens (3 samples) and of vt/cwe/fwe at 4096 (2 samples),
    sized with SmolLM2's tokenizer; generated once per session, no cache involved."""
    from sparse_attention_hub.benchmark.synthetic.generate import generate_rows
    from sparse_attention_hub.benchmark.synthetic.tasks import TASKS

    rows = {
        (task, SMALL): generate_rows(task, SMALL, 3, seed=42, tokenizer=chat_tokenizer)
        for task in TASKS
    }
    for task in ("vt", "cwe", "fwe"):
        rows[task, LARGE] = generate_rows(task, LARGE, 2, seed=42, tokenizer=chat_tokenizer)
    return rows
