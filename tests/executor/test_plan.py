"""The pure plan: expansion, validation before any work, paths, fingerprints, job states."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparse_attention_hub.benchmark.registry import get_benchmark_class
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor import JobState, plan, spec_from_dict
from sparse_attention_hub.executor.plan import check_gpu_ids, sanitize
from sparse_attention_hub.executor.testing import FACTORY

BENCH = "longbench"  # plan tests only construct benchmarks; nothing is loaded


def make_spec(tmp_path: Path, **overrides: Any) -> Any:
    data: dict[str, Any] = {
        "models": ["org/model-a", "model-b"],
        "sparse_configs": [["dense", None], ["dense_again", None]],
        "benchmarks": [{"name": BENCH, "subsets": ["qasper", "trec"]}],
        "adapter": {"factory": FACTORY},
        "result_dir": str(tmp_path / "results"),
    }
    data.update(overrides)
    return spec_from_dict(data)


def test_expansion_one_job_per_cell_with_sanitised_paths(tmp_path: Path) -> None:
    jobs = plan(make_spec(tmp_path))
    assert len(jobs) == 2 * 2 * 2
    ids = [j.job_id for j in jobs]
    assert ids[0] == "org__model-a/dense/longbench_qasper"
    assert "model-b/dense_again/longbench_trec" in ids
    assert len(set(ids)) == len(ids)
    for job in jobs:
        assert job.result_dir == (tmp_path / "results" / job.job_id).absolute()
        assert job.state == JobState.PENDING
    assert not (tmp_path / "results").exists()  # planning writes nothing


def test_subsets_default_to_all(tmp_path: Path) -> None:
    jobs = plan(
        make_spec(
            tmp_path, models=["m"], sparse_configs=[["dense", None]], benchmarks=[{"name": BENCH}]
        )
    )
    assert [j.subset for j in jobs] == list(get_benchmark_class(BENCH).all_datasets)


def test_every_problem_reported_at_once_before_any_work(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path,
        benchmarks=[
            {"name": "longbenchh"},
            {"name": BENCH, "subsets": ["qasper", "nope"], "data_path": str(tmp_path / "gone")},
        ],
    )
    with pytest.raises(ConfigError) as info:
        plan(spec)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert f"benchmarks[1].data_path: {tmp_path / 'gone'} does not exist" in message
    assert "unknown benchmark 'longbenchh'" in message and "Did you mean 'longbench'" in message
    assert "'nope'" in message
    assert not (tmp_path / "results").exists()


def test_duplicate_sparse_names_and_bad_kwargs_error_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_spec(
            tmp_path,
            sparse_configs=[["dense", None], ["dense", None]],
            request_kwargs={"max_request": 3},
            execution={"gpu_ids": [-1], "max_concurrent_runs": 0},
        )
    message = str(info.value)
    assert "duplicate sparse config names ['dense']" in message
    assert "request_kwargs.max_request: unknown key; allowed: max_requests" in message
    assert "gpu ids must be >= 0" in message
    assert "max_concurrent_runs" in message


def test_gpu_ids_checked_against_devices() -> None:
    check_gpu_ids([0, 1], device_count=2)
    check_gpu_ids([], device_count=0)
    with pytest.raises(ConfigError, match=r"gpu id\(s\) \[2\] do not exist.*2 CUDA device"):
        check_gpu_ids([0, 2], device_count=2)
    with pytest.raises(ConfigError, match="omit gpu_ids for CPU"):
        check_gpu_ids([0], device_count=0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("meta-llama/Llama-3.1-8B", "meta-llama__Llama-3.1-8B"),
        ("../../etc/passwd", "etc__passwd"),
        ("/abs/path/model", "abs__path__model"),
        ("a b:c*d", "a_b_c_d"),
        ("sink=4+local", "sink=4+local"),
    ],
)
def test_sanitize_is_one_safe_component(name: str, expected: str) -> None:
    safe = sanitize(name)
    assert safe == expected
    assert "/" not in safe and safe not in (".", "..") and not safe.startswith(".")


def test_sanitize_rejects_empty_and_caps_length() -> None:
    with pytest.raises(ConfigError):
        sanitize("../..")
    long = sanitize("x" * 500)
    assert len(long) == 120 and long != sanitize("x" * 501)


def test_paths_never_escape_and_collisions_error(tmp_path: Path) -> None:
    jobs = plan(make_spec(tmp_path, models=["../../../tmp/evil"], sparse_configs=[["../x", None]]))
    base = (tmp_path / "results").absolute()
    for job in jobs:
        assert job.result_dir.resolve().is_relative_to(base)
    with pytest.raises(ConfigError, match="map to the same dir"):
        plan(make_spec(tmp_path, models=["org/m", "org__m"]))


def test_result_dir_must_be_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(ConfigError, match="is not a directory"):
        plan(make_spec(tmp_path, result_dir=str(blocker / "results")))


def test_fingerprint_is_stable_and_covers_every_input(tmp_path: Path) -> None:
    base = {j.job_id: j.fingerprint for j in plan(make_spec(tmp_path))}
    assert base == {j.job_id: j.fingerprint for j in plan(make_spec(tmp_path))}
    # the name is the path, not a parameter: the same config under two names hashes alike
    assert len(set(base.values())) == 4
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qasper.jsonl").write_text("")
    changes: list[dict[str, Any]] = [
        {"generation_kwargs": {"max_new_tokens": 8}},
        {"request_kwargs": {"max_requests": 2}},
        {"adapter": {"factory": FACTORY, "model_kwargs": {"delay_s": 1}}},
        {
            "benchmarks": [
                {"name": BENCH, "subsets": ["qasper", "trec"], "data_path": str(tmp_path / "data")}
            ]
        },
    ]
    for change in changes:
        changed = {j.job_id: j.fingerprint for j in plan(make_spec(tmp_path, **change))}
        assert set(changed) == set(base)
        assert all(changed[k] != base[k] for k in base), change


def test_sparse_config_fingerprint_changes_the_job(tmp_path: Path) -> None:
    from sparse_attention_hub.sparse_attention import get_preset

    dense = plan(make_spec(tmp_path, sparse_configs=[["m", None]]))
    streaming = plan(make_spec(tmp_path, sparse_configs=[["m", "streaming"]]))
    custom = plan(
        make_spec(
            tmp_path,
            sparse_configs={
                "m": {
                    "masker_configs": [
                        {"type": "sink", "sink_size": 4},
                        {"type": "local", "window_size": 16},
                    ]
                }
            },
        )
    )
    prints = (
        {j.fingerprint for j in dense}
        | {j.fingerprint for j in streaming}
        | {j.fingerprint for j in custom}
    )
    assert len(prints) == 3 * len(dense)
    assert streaming[0].sparse_config == get_preset("streaming")


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def test_states_complete_stale_failed_pending(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, models=["m"], sparse_configs=[["dense", None]])
    done, stale = plan(spec)
    write_json(done.result_dir / "manifest.json", {"fingerprint": done.fingerprint})
    write_json(done.result_dir / "metrics.json", {"overall": 50.0})
    write_json(stale.result_dir / "manifest.json", {"fingerprint": "0" * 16})
    assert [j.state for j in plan(spec)] == [JobState.COMPLETE, JobState.STALE]

    (stale.result_dir / "manifest.json").unlink()
    write_json(stale.result_dir / "failure.json", {"fingerprint": stale.fingerprint})
    assert plan(spec)[1].state == JobState.FAILED
    write_json(stale.result_dir / "failure.json", {"fingerprint": "old"})
    assert plan(spec)[1].state == JobState.PENDING  # failed with other parameters: run afresh

    # partial predictions made with other parameters are never resumed
    write_json(stale.result_dir / "config.json", {"job": {"fingerprint": "old"}})
    (stale.result_dir / "predictions.jsonl").write_text('{"sample_id": "1", "prediction": "x"}\n')
    assert plan(spec)[1].state == JobState.STALE
    write_json(stale.result_dir / "config.json", {"job": {"fingerprint": stale.fingerprint}})
    assert plan(spec)[1].state == JobState.PENDING


def test_wrong_gpu_ids_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, benchmarks=[{"name": "longbenchh"}])
    with pytest.raises(ConfigError) as info:
        plan(spec, gpu_ids=[0, 3], device_count=2)
    message = str(info.value)
    assert "2 problem(s)" in message
    assert "gpu id(s) [3] do not exist" in message and "'longbenchh'" in message
    assert len(plan(make_spec(tmp_path), gpu_ids=[0, 1], device_count=2)) == 8


def test_adapter_kwargs_must_be_plain_values_dtype_becomes_its_name(tmp_path: Path) -> None:
    import torch

    spec = make_spec(
        tmp_path, adapter={"factory": FACTORY, "model_kwargs": {"dtype": torch.float16}}
    )
    assert spec.adapter.model_kwargs == {"dtype": "float16"}
    assert plan(spec)[0].inputs["adapter"]["model_kwargs"] == {"dtype": "float16"}
    with pytest.raises(ConfigError) as info:
        make_spec(
            tmp_path,
            adapter={"model_kwargs": {"quantizer": object()}, "tokenizer_kwargs": {"t": {1, 2}}},
            generation_kwargs={"temperature": float("nan")},
        )
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "adapter.model_kwargs" in message and "adapter.tokenizer_kwargs" in message
    assert "generation_kwargs" in message and "plain JSON values" in message
