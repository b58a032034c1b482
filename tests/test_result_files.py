"""The result tree's file names: a re-run job starts from an empty dir (nothing left behind)."""

from __future__ import annotations

from pathlib import Path

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark import create_benchmark_instance
from sparse_attention_hub.executor.results import reset_job_dir
from sparse_attention_hub.result_files import (
    JOB_FILES,
    is_extra_file,
    job_files,
    leaderboard_file,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "zero_scrolls"


def test_reset_job_dir_removes_every_file_a_job_wrote(tmp_path: Path) -> None:
    """The ZeroSCROLLS test split writes leaderboard files besides the usual job files."""
    job_dir = tmp_path / "job"
    bench = create_benchmark_instance("zero_scrolls", data_path=FIXTURES)
    bench.run_benchmark(ScriptedAdapter(answer_fn=lambda context, question: "x"), job_dir)
    written = sorted(p.name for p in job_dir.iterdir())
    assert leaderboard_file("qasper") in written
    assert sorted(p.name for p in job_files(job_dir)) == written

    reset_job_dir(job_dir)
    assert list(job_dir.iterdir()) == []


def test_extra_files_are_told_apart_from_the_job_files() -> None:
    assert is_extra_file(leaderboard_file("gov_report"))
    assert not any(is_extra_file(name) for name in JOB_FILES)
    assert not is_extra_file("notes.txt")
