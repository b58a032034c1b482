"""One import serves a user script, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import sparse_attention_hub


def test_every_public_name_resolves() -> None:
    for name in sparse_attention_hub.__all__:
        assert getattr(sparse_attention_hub, name) is not None, name


def test_import_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, sparse_attention_hub; "
        "print(','.join(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
