"""What to run: the experiment matrix as frozen pydantic models, from Python or from YAML.

`ExperimentSpec` is the one description both `BenchmarkExecutor.run_benchmark_matrix` and
`sah run experiment.yaml` build; everything is validated here (shape and values) and in
`plan.validate` (names against the registries, devices, the result dir) before any work starts.
In YAML a sparse config is a preset name, `null` (dense) or a dict `{masker_configs: [...]}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from sparse_attention_hub.benchmark.base import REQUEST_KWARGS
from sparse_attention_hub.errors import ConfigError

FROZEN = ConfigDict(frozen=True, extra="forbid")


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class BenchmarkConfig:
    """One benchmark of the matrix; `subsets=None` means every subset it has."""

    name: str
    subsets: list[str] | None = None
    data_path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


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

    gpu_ids: list[int] = Field(default_factory=list)
    max_concurrent_runs: int = Field(default=1, ge=1)
    max_retries: int = Field(default=1, ge=0)
    job_timeout_s: float | None = Field(default=None, gt=0)
    gpu_memory_fraction: float | None = Field(default=None, gt=0, le=1)
    backend: Literal["local", "debug"] = "local"

    @field_validator("gpu_ids")
    @classmethod
    def _gpu_ids(cls, ids: list[int]) -> list[int]:
        bad = [i for i in ids if i < 0]
        if bad:
            raise ValueError(f"gpu ids must be >= 0, got {bad}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"gpu ids must be unique, got {ids}")
        return ids


SparseEntry = tuple[str, Any]


class ExperimentSpec(BaseModel):
    """The matrix models x sparse configs x benchmarks (x subsets) and where results go."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    models: list[str] = Field(min_length=1)
    sparse_configs: list[SparseEntry] = Field(default_factory=lambda: [("dense", None)])
    benchmarks: list[BenchmarkConfig] = Field(min_length=1)
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    generation_kwargs: dict[str, Any] = Field(default_factory=dict)
    request_kwargs: dict[str, Any] = Field(default_factory=dict)
    result_dir: str = "results"
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
        unknown = sorted(set(kwargs) - set(REQUEST_KWARGS))
        if unknown:
            raise ValueError(
                f"unknown request_kwargs {unknown}; allowed: {', '.join(REQUEST_KWARGS)}"
            )
        return kwargs

    @field_validator("generation_kwargs")
    @classmethod
    def _generation_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
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


def resolve_sparse_configs(value: Any) -> list[SparseEntry]:
    """`[(name, config|None)]`, `{name: preset|None|dict}` or `[{name, config}]` -> entries.

    Every bad entry is reported in one error; names must be unique.
    """
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)):
        pairs = [_pair(item) for item in value]
    else:
        raise ValueError(
            f"sparse_configs must be a list of (name, config) or a mapping, got {value!r}"
        )
    problems: list[str] = []
    entries: list[SparseEntry] = []
    for name, raw in pairs:
        if not isinstance(name, str) or not name.strip():
            problems.append(f"sparse config name must be a non-empty string, got {name!r}")
            continue
        try:
            entries.append((name, _to_config(raw)))
        except (ConfigError, ValueError, TypeError, ValidationError) as exc:
            problems.append(f"sparse config {name!r}: {exc}")
    names = [name for name, _ in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"duplicate sparse config names {duplicates}")
    if problems:
        raise ValueError("; ".join(problems))
    return entries


def _pair(item: Any) -> tuple[Any, Any]:
    if isinstance(item, Mapping) and set(item) <= {"name", "config"} and "name" in item:
        return item["name"], item.get("config")
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return item[0], item[1]
    if isinstance(item, str):  # a bare preset name names itself
        return item, item
    raise ValueError(
        f"sparse config entry must be (name, config) or {{name, config}}, got {item!r}"
    )


def _to_config(raw: Any) -> Any:
    """None stays dense; a str is a preset; a dict is parsed; a config object passes through."""
    if raw is None:
        return None
    from sparse_attention_hub import sparse_attention

    if isinstance(raw, str):
        return sparse_attention.get_preset(raw)
    if isinstance(raw, Mapping):
        return sparse_attention.config_from_dict(dict(raw))
    if callable(getattr(raw, "fingerprint", None)):
        return raw
    raise TypeError(f"expected a preset name, null or a dict, got {type(raw).__name__}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return dict(loader.construct_pairs(node))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def spec_from_dict(data: Mapping[str, Any]) -> ExperimentSpec:
    """Validate a plain dict; every problem is listed in one ConfigError."""
    try:
        return ExperimentSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read an experiment YAML file (see examples/quickstart.yaml)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read experiment file {path}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return spec_from_dict(data)


def format_validation_error(exc: ValidationError) -> str:
    lines = [f"{len(exc.errors())} problem(s) in the experiment spec:"]
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        lines.append(f"  - {where}: {error['msg']}")
    return "\n".join(lines)
