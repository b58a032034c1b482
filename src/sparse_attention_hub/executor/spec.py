"""What to run: the experiment matrix as frozen pydantic models, from Python or from YAML.

`ExperimentSpec` is the one description both `BenchmarkExecutor.run_benchmark_matrix` and
`sah run experiment.yaml` build; everything is validated here (shape and values) and in
`plan.plan` (names against the registries, devices, the result dir) before any work starts.
In YAML a sparse config is a preset name, `null` (dense) or a dict `{masker_configs: [...]}`
(`sparse_entries.py`); problems are reported as `problems.py` says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from sparse_attention_hub.adapters.request_kwargs import (
    check_request_kwargs,
    request_kwarg_problems,
)
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.problems import (
    KeyProblems,
    config_errors,
    format_validation_error,
)
from sparse_attention_hub.executor.sparse_entries import SparseEntry, resolve_sparse_configs

FROZEN = ConfigDict(frozen=True, extra="forbid")


def _list_of(items: str) -> BeforeValidator:
    """A list field: one string in its place gets its own message (pydantic: "not a list")."""

    def check(value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"must be a list of {items} such as [{value!r}], got a string")
        return value

    return BeforeValidator(check)


@config_errors
@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class BenchmarkConfig:
    """One benchmark of the matrix; `subsets=None` means every subset it has.

    `data_path` has `~` expanded here, once, so the plan checks the path the loader reads.
    """

    name: str
    subsets: Annotated[list[str] | None, _list_of("subset names")] = None
    data_path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data_path")
    @classmethod
    def _data_path(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a path to a local copy of the data, or omitted")
        return None if value is None else str(Path(value).expanduser())


@config_errors
@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class AdapterConfig:
    """How a worker builds a model: kwargs for the model and tokenizer, and which factory.

    `factory` is an importable `"module:callable"` taking `(model_name, sparse_attention_config,
    model_kwargs, tokenizer_kwargs, device)`; None means `ModelAdapterHF`.
    """

    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    tokenizer_kwargs: dict[str, Any] = Field(default_factory=dict)
    factory: str | None = None

    @field_validator("model_kwargs", "tokenizer_kwargs")
    @classmethod
    def _plain_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Plain values only: they are fingerprinted and pickled to workers.

        A `torch.dtype` becomes its name (`torch.bfloat16` -> "bfloat16"), which transformers
        accepts too; anything else that is not JSON (an object, a tokenizer) is an error now,
        not a fingerprint that changes every run or a pickling failure once workers are up.
        """
        return plain_json({key: _dtype_name(value) for key, value in kwargs.items()})

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_kwargs": self.model_kwargs,
            "tokenizer_kwargs": self.tokenizer_kwargs,
            "factory": self.factory,
        }


class ExecutionConfig(BaseModel):
    """How to run: slots, retries, timeouts, backend (CLI flags override these)."""

    model_config = FROZEN

    gpu_ids: list[StrictInt] = Field(default_factory=list)
    max_concurrent_runs: StrictInt = Field(default=1, ge=1)
    max_retries: StrictInt = Field(default=1, ge=0)
    job_timeout_s: float | None = Field(default=None, gt=0, strict=True)
    gpu_memory_fraction: float | None = Field(default=None, gt=0, le=1, strict=True)
    backend: Literal["local", "debug", "ray"] = "local"
    ray_address: str | None = None  # ray: `auto`, `host:port`; None starts a local instance
    runs_per_gpu: StrictInt = Field(default=1, ge=1)  # ray: each actor takes 1/runs_per_gpu GPU
    # jobs that differ only in their sparse config run as one bundle: one context prefill each
    share_prefill: bool = True

    @field_validator("gpu_ids", mode="before")
    @classmethod
    def _gpu_id_list(cls, value: Any) -> Any:
        if isinstance(value, (str, int)):
            raise ValueError(
                f"must be a list of GPU ids such as [0, 1] ([] for CPU), got {value!r}"
            )
        return value

    @field_validator("gpu_ids")
    @classmethod
    def _gpu_ids(cls, ids: list[int]) -> list[int]:
        bad = [i for i in ids if i < 0]
        if bad:
            raise ValueError(f"gpu ids must be >= 0, got {bad}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"gpu ids must be unique, got {ids}")
        return ids

    @model_validator(mode="after")
    def _ray_options(self) -> ExecutionConfig:
        if self.backend == "ray" and self.gpu_ids:
            raise ValueError(
                f"gpu_ids {self.gpu_ids} (--gpus) cannot be used with backend 'ray': its actors "
                "take GPUs from the Ray cluster; remove gpu_ids and set max_concurrent_runs "
                "(and runs_per_gpu for several runs sharing one GPU)"
            )
        if self.backend != "ray" and (self.ray_address is not None or self.runs_per_gpu != 1):
            raise ValueError(
                f"ray_address and runs_per_gpu are only used with backend 'ray', "
                f"not {self.backend!r}"
            )
        return self


class ExperimentSpec(BaseModel):
    """The matrix models x sparse configs x benchmarks (x subsets) and where results go."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    models: Annotated[list[str], _list_of("model names")] = Field(min_length=1)
    sparse_configs: list[SparseEntry] = Field(default_factory=lambda: [("dense", None)])
    benchmarks: list[BenchmarkConfig] = Field(min_length=1)
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    generation_kwargs: dict[str, Any] = Field(default_factory=dict)
    request_kwargs: dict[str, Any] = Field(default_factory=dict)
    result_dir: str = Field(default="results", min_length=1)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)

    @field_validator("models")
    @classmethod
    def _models(cls, models: list[str]) -> list[str]:
        duplicates = sorted({m for m in models if models.count(m) > 1})
        if duplicates:
            raise ValueError(f"duplicate model names {duplicates}")
        if any(not m.strip() for m in models):
            raise ValueError("model names must be non-empty")
        return models

    @field_validator("sparse_configs", mode="before")
    @classmethod
    def _sparse_configs(cls, value: Any) -> list[SparseEntry]:
        return resolve_sparse_configs(value)

    @field_validator("request_kwargs")
    @classmethod
    def _request_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        problems = request_kwarg_problems(kwargs)
        if problems:
            raise KeyProblems(problems)
        checked = check_request_kwargs(kwargs)
        return {key: checked[key] for key in kwargs}

    @field_validator("generation_kwargs")
    @classmethod
    def _generation_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Checked here against the adapters' generation options, not after a model loads."""
        from sparse_attention_hub.adapters.generation import GenerationOptions

        allowed = list(GenerationOptions.model_fields)
        problems = [
            (str(key), f"unknown key; allowed: {', '.join(allowed)}")
            for key in kwargs
            if key not in allowed
        ]
        known = {k: v for k, v in kwargs.items() if k in allowed}
        try:
            GenerationOptions.model_validate(known)  # as the adapter will parse them
        except ValidationError as exc:
            for error in exc.errors():
                key = ".".join(str(part) for part in error["loc"])
                problems.append((key, f"{error['msg']}, got {error.get('input')!r}"))
        if problems:
            raise KeyProblems(problems)
        return plain_json(kwargs)


def plain_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs unchanged if they are plain JSON values, else a ValueError naming the problem."""
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"must be plain JSON values (str, number, bool, null, list, dict): {exc}"
        ) from None
    return kwargs


def _dtype_name(value: Any) -> Any:
    kind = type(value)
    if kind.__module__ == "torch" and kind.__name__ == "dtype":
        return str(value).removeprefix("torch.")
    return value


def spec_from_dict(data: Mapping[str, Any]) -> ExperimentSpec:
    """Validate a plain dict; every problem is listed in one ConfigError."""
    try:
        return ExperimentSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, ExperimentSpec, "the experiment spec")
        ) from None
