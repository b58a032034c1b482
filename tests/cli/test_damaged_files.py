"""`sah status` / `sah report` on damaged or foreign files: one line naming the file, exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparse_attention_hub.cli.main import EXIT_CONFIG, main
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.results import read_results_csv


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("status.json", '{"run_id": "a", "counts": {"compl', "cannot be read as JSON"),
        ("status.json", "[1, 2, 3]", "holds a list, expected a JSON object"),
        ("status.json", '{"workers": [{"job": "x"}]}', "not the shape `sah run` writes"),
        ("status.json", '{"counts": 7}', "not the shape `sah run` writes"),
        ("execution_summary.json", '{"failures": [1]}', "not the shape `sah run` writes"),
        ("execution_summary.json", '{"wall_s": "soon"}', "not the shape `sah run` writes"),
        ("execution_summary.json", "\u00e9t\u00e9", "cannot be read as JSON"),
    ],
)
def test_status_names_the_damaged_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, fragment: str
) -> None:
    (tmp_path / name).write_text(text, encoding="latin-1" if "\u00e9" in text else "utf-8")
    assert main(["status", str(tmp_path)]) == EXIT_CONFIG
    err = one_line_error(capsys)
    assert str(tmp_path / name) in err and fragment in err


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("root:x:0:0:root:/root:/bin/bash\n", "is not a results.csv written by `sah run`"),
        ("a,b\n1,2\n", "its header is 'a,b'"),
        ('model,sparse_config\n"unclosed,1\n', "is not a results.csv written by `sah run`"),
        ("", "is not a results.csv written by `sah run`"),
    ],
)
def test_results_csv_reader_refuses_foreign_or_malformed_files(
    tmp_path: Path, text: str, fragment: str
) -> None:
    (tmp_path / "results.csv").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        read_results_csv(tmp_path / "results.csv")


def test_report_of_a_dir_without_job_dirs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "results.csv").write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert main(["report", str(tmp_path)]) == EXIT_CONFIG
    assert f"{tmp_path} has no job dirs yet" in one_line_error(capsys)


def test_report_on_a_system_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "/etc/passwd"]) == EXIT_CONFIG
    assert "/etc/passwd is not a directory" in one_line_error(capsys)
