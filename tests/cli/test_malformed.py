"""Every file in `malformed/` holds one mistake: `sah run --dry-run` must exit 2 with one message.

Each file names its mistake and the message fragments it must produce (`# expect: ...`): the key
path and what is allowed. Nothing may be written and no worker started (a dry run starts none;
the result dir must not even be created).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparse_attention_hub.cli.main import EXIT_CONFIG, main

CORPUS = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))


def expected_fragments(path: Path) -> list[str]:
    head = path.read_bytes()[:4096].decode("utf-8", errors="replace")
    if "\x00" in head:  # the UTF-16 file: its header is UTF-16 too
        head = path.read_bytes()[:4096].decode("utf-16", errors="replace")
    return re.findall(r"^# expect: (.*)$", head, flags=re.MULTILINE)


def test_corpus_is_large_and_every_file_says_what_it_expects() -> None:
    assert len(CORPUS) >= 60
    for path in CORPUS:
        assert expected_fragments(path), path.name


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_dry_run_refuses_with_one_clear_message(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # relative result dirs would land here
    assert main(["run", str(path), "--dry-run"]) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    message = captured.err
    assert message.startswith("error: ") and "Traceback" not in message
    for fragment in expected_fragments(path):
        assert fragment in message, f"{path.name}: {fragment!r} not in {message!r}"
    assert len(message.splitlines()) <= 25  # capped: never one line per repeated problem
    assert list(tmp_path.iterdir()) == []  # nothing written, no worker started
