"""The result tree under damage: corrupt jobs, links out of the root, tables from the tree."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor import BenchmarkExecutor, JobState, plan, spec_from_dict
from sparse_attention_hub.executor.results import read_results_csv
from sparse_attention_hub.executor.testing import answered, experiment


def run(base: Path, **overrides: Any) -> Any:
    data = experiment(base, execution={"backend": "debug"}, **overrides)
    spec = spec_from_dict(data)
    return BenchmarkExecutor.from_spec(spec, progress=False).run(spec)


def states(base: Path, **overrides: Any) -> dict[str, tuple[str, str]]:
    jobs = plan(spec_from_dict(experiment(base, **overrides)))
    return {j.job_id: (j.state.value, j.problem) for j in jobs}


JOB = "m1/dense/mock_benchmark_reading_comprehension"


def job_dir(base: Path, job_id: str = JOB) -> Path:
    return base / "results" / job_id


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d: (d / "metrics.json").unlink(), "metrics.json is missing"),
        (lambda d: (d / "metrics.json").write_text('{"overall": 1'), "metrics.json is not valid"),
        (lambda d: (d / "metrics.json").write_text("[1, 2]"), "metrics.json holds a list"),
        (lambda d: (d / "manifest.json").write_text('{"fingerpr'), "manifest.json is not valid"),
        (lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe"), "manifest.json is not UTF-8"),
    ],
)
def test_damaged_job_is_corrupt_and_resumes_from_its_predictions(
    base: Path, damage: Any, problem: str
) -> None:
    assert run(base).ok
    before = answered(job_dir(base))
    damage(job_dir(base))
    state, what = states(base)[JOB]
    assert state == "corrupt" and problem in what  # never complete, never stale
    results = run(base)
    assert results.ok  # no traceback, execution_summary.json written
    summary = json.loads((base / "results" / "execution_summary.json").read_text())
    assert summary["counts"]["complete"] == 1
    assert problem in summary["corrupt_at_start"][JOB]
    assert answered(job_dir(base)) == before  # resumed: no sample answered again
    assert states(base)[JOB][0] == "complete"
    assert set(read_results_csv(base / "results" / "results.csv")["sparse_config"]) == {"dense"}


def test_corrupt_job_is_reported_by_dry_run_and_summary(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from sparse_attention_hub.cli.main import main

    assert run(base).ok
    (job_dir(base) / "metrics.json").unlink()
    path = base / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment(base, execution={"backend": "debug"})))
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"corrupt   run  {JOB}  (metrics.json is missing)" in out
    assert "1 corrupt" in out


def test_manifest_of_other_parameters_is_stale_even_when_truncated(base: Path) -> None:
    assert run(base).ok
    (job_dir(base) / "manifest.json").write_text("{")
    changed = {"generation_kwargs": {"max_new_tokens": 3}}
    assert states(base, **changed)[JOB][0] == "stale"  # config.json names other parameters


def test_results_csv_keeps_complete_jobs_of_an_earlier_experiment(base: Path) -> None:
    assert run(base, sparse_configs={"dense": None, "other": None}).ok
    assert run(base, sparse_configs={"dense": None}).ok  # a smaller matrix, same dir
    frame = read_results_csv(base / "results" / "results.csv")
    assert set(frame["sparse_config"]) == {"dense", "other"}


def test_job_dir_linked_outside_the_result_dir_is_refused(base: Path) -> None:
    outside = base / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (base / "results" / "m1").mkdir(parents=True)
    os.symlink(outside, base / "results" / "m1" / "dense")
    with pytest.raises(ConfigError) as info:
        run(base)
    assert f"{base / 'results' / 'm1' / 'dense'} is a symlink to {outside}" in str(info.value)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]  # nothing written there


def test_rerun_stale_never_deletes_through_a_link(base: Path) -> None:
    assert run(base).ok
    outside = base / "outside"
    outside.mkdir()
    target = outside / "predictions.jsonl"
    target.write_text("precious\n")
    predictions = job_dir(base) / "predictions.jsonl"
    predictions.unlink()
    os.symlink(target, predictions)
    data = experiment(base, execution={"backend": "debug"}, generation_kwargs={"seed": 1})
    spec = spec_from_dict(data)
    with pytest.raises(ConfigError, match=r"predictions\.jsonl is a symlink to"):
        BenchmarkExecutor.from_spec(spec, rerun_stale=True, progress=False).run(spec)
    assert target.read_text() == "precious\n"


def test_a_file_where_a_job_dir_belongs_is_one_message(base: Path) -> None:
    (base / "results").mkdir()
    (base / "results" / "m1").write_text("not a dir")
    with pytest.raises(ConfigError, match="m1 exists and is not a directory"):
        run(base)


def test_result_dir_that_cannot_hold_files_is_one_message(base: Path) -> None:
    with pytest.raises(ConfigError, match=r"result_dir /proc/sah-x: cannot write there"):
        run(base, result_dir="/proc/sah-x")


def test_plan_states_cover_corrupt(base: Path) -> None:
    assert JobState("corrupt") == JobState.CORRUPT


def test_read_only_model_dir_is_one_message_before_any_work(base: Path) -> None:
    """As a user who may not write there (root may write anywhere, so drop to `nobody`)."""
    import tempfile

    import yaml

    from sparse_attention_hub.cli.main import main

    assert run(base).ok  # imports everything a run needs before the fork
    root = Path(tempfile.mkdtemp(prefix="sah-ro-"))
    try:
        root.chmod(0o755)
        data = experiment(root, execution={"backend": "debug"})
        (root / "results" / "m1").mkdir(parents=True)
        (root / "results").chmod(0o777)
        (root / "results" / "m1").chmod(0o555)
        path = root / "experiment.yaml"
        path.write_text(yaml.safe_dump(data))
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 99
            try:
                os.close(read)
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                import contextlib
                import io

                err = io.StringIO()
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    try:
                        code = main(["run", str(path), "--no-progress"])
                    except BaseException as exc:  # what main lets escape
                        err.write(f"escaped: {type(exc).__name__}: {exc}")
                        code = 98
                os.write(write, f"{code}\n{err.getvalue()}".encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            output = pipe.read()
        os.waitpid(pid, 0)
        code, _, message = output.partition("\n")
        assert code == "2", message
        assert f"{root / 'results' / 'm1'} is not writable" in message
        assert not (root / "results" / "m1" / "dense").exists()
    finally:
        (root / "results" / "m1").chmod(0o755)
        import shutil

        shutil.rmtree(root)
