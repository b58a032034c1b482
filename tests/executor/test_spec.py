"""The experiment spec from Python: every mistake is a ConfigError that says what to pass."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sparse_attention_hub.benchmark.mock_benchmark import MockBenchmark
from sparse_attention_hub.cli.main import main
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor import (
    AdapterConfig,
    BenchmarkConfig,
    BenchmarkExecutor,
    plan,
    spec_from_dict,
)
from sparse_attention_hub.executor.failures import CONFIG, failure_from_exception
from sparse_attention_hub.executor.testing import FACTORY, experiment

MOCK = [BenchmarkConfig("mock_benchmark")]


def run_matrix(tmp_path: Path, **kwargs: Any) -> Any:
    executor = BenchmarkExecutor(base_result_dir=tmp_path / "results")
    arguments: dict[str, Any] = {
        "model_names": ["m1"],
        "benchmark_configs": MOCK,
        "adapter_config": AdapterConfig(factory=FACTORY),
        **kwargs,
    }
    return executor.run_benchmark_matrix(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"gpu_ids": "0,1"}, "gpu_ids: must be a list of GPU ids such as [0, 1]"),
        ({"gpu_ids": 0}, "gpu_ids: must be a list of GPU ids"),
        ({"max_concurrent_runs": True}, "max_concurrent_runs: Input should be a valid integer"),
        ({"max_retries": "2"}, "max_retries: Input should be a valid integer"),
        ({"job_timeout_s": True}, "job_timeout_s: Input should be a valid number"),
    ],
)
def test_executor_arguments_raise_config_error(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        BenchmarkExecutor(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: BenchmarkConfig("longbench", "qasper"), "subsets: must be a list of subset names"),
        (lambda: BenchmarkConfig(name=3), "name: Input should be a valid string"),
        (lambda: AdapterConfig(model_kwargs=[1]), "model_kwargs: Input should be a valid dict"),
        (lambda: AdapterConfig(factory_path="x"), "unknown key; allowed: model_kwargs"),
    ],
)
def test_config_classes_raise_config_error_not_validation_error(build: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert fragment in str(info.value)


def test_a_string_of_model_names_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"models: must be a list of model names such as \['m1'\]"
    ):
        run_matrix(tmp_path, model_names="m1")


def test_only_real_sparse_configs_are_accepted(tmp_path: Path) -> None:
    class Impostor:
        def fingerprint(self) -> str:
            return "x"

    with pytest.raises(ConfigError, match=r"sparse_configs\.fake: expected a preset name"):
        run_matrix(tmp_path, sparse_attention_configs=[("fake", Impostor())])
    assert not (tmp_path / "results").exists()


def test_generation_and_request_kwargs_are_checked_by_the_plan(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_matrix(
            tmp_path,
            generation_kwargs={"max_new_tokens": "four", "max_tokens": 3},
            request_kwargs={"max_requests": -1, "max_context_length": "lots"},
        )
    message = str(info.value)
    assert "generation_kwargs.max_tokens: unknown key; allowed: max_new_tokens" in message
    assert "generation_kwargs.max_new_tokens: Input should be a valid integer" in message
    assert "request_kwargs.max_requests: must be an int >= 1 or null, got -1" in message
    assert "request_kwargs.max_context_length: must be an int >= 1 or null, got 'lots'" in message
    assert not (tmp_path / "results").exists()  # refused before any worker or file


def test_data_path_tilde_is_expanded_for_the_loader_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qasper.jsonl").write_text("")
    config = BenchmarkConfig("longbench", ["qasper"], data_path="~/data")
    assert config.data_path == str(tmp_path / "data")
    spec = spec_from_dict({**experiment(tmp_path), "benchmarks": [config]})
    assert plan(spec)[0].data_path == str(tmp_path / "data")  # what the worker hands the loader


def test_empty_data_path_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    spec = spec_from_dict(
        {
            **experiment(tmp_path),
            "benchmarks": [{"name": "longbench", "data_path": str(tmp_path / "empty")}],
        }
    )
    with pytest.raises(ConfigError, match=r"benchmarks\[0\].data_path: .* is an empty directory"):
        plan(spec)


def test_factory_with_the_wrong_signature_is_refused(tmp_path: Path) -> None:
    spec = spec_from_dict(
        {
            **experiment(tmp_path),
            "adapter": {"factory": "sparse_attention_hub.executor.testing:executions"},
        }
    )
    with pytest.raises(ConfigError, match=r"adapter.factory: .* cannot be called as factory\("):
        plan(spec)


class _ConfigErrorBenchmark(MockBenchmark):
    def load_subset(self, subset: str) -> pd.DataFrame:
        raise ConfigError("option x must be positive")


def test_config_error_while_loading_a_subset_is_not_retried() -> None:
    with pytest.raises(ConfigError) as info:
        _ConfigErrorBenchmark().load_samples()
    assert failure_from_exception(info.value).category == CONFIG


def test_trust_remote_code_is_warned_in_the_plan_and_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import yaml

    data = experiment(tmp_path)
    data["adapter"]["model_kwargs"]["trust_remote_code"] = True
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--dry-run"]) == 0
    assert "warning: adapter.model_kwargs.trust_remote_code is true" in capsys.readouterr().out
    assert main(["run", str(path), "--debug", "--no-progress"]) == 0
    assert "trust_remote_code is true" in caplog.text


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    from sparse_attention_hub.executor import load_spec

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    path = tmp_path / "bomb.yaml"
    path.write_text("generation_kwargs:\n" + "".join(f"  {line}\n" for line in lines))
    with pytest.raises(ConfigError, match="expand to more than 100,000 values"):
        load_spec(path)
    assert os.path.getsize(path) < 2000
