"""What to run: the experiment matrix as frozen pydantic models, from Python or from YAML.

`ExperimentSpec` is the one description both `BenchmarkExecutor.run_benchmark_matrix` and
`sah run experiment.yaml` build; everything is validated here (shape and values) and in
`plan.validate` (names against the registries, devices, the result dir) before any work starts.
In YAML a sparse config is a preset name, `null` (dense) or a dict `{masker_configs: [...]}`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
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
from sparse_attention_hub.executor.problems import KeyProblems, bullet, key_path

FROZEN = ConfigDict(frozen=True, extra="forbid")
_C = TypeVar("_C")


def config_errors(cls: type[_C]) -> type[_C]:
    """Constructing `cls` in Python raises ConfigError, not pydantic's ValidationError."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, cls.__name__)) from None

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


@config_errors
@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class BenchmarkConfig:
    """One benchmark of the matrix; `subsets=None` means every subset it has.

    `data_path` has `~` expanded here, once, so the plan checks the path the loader reads.
    """

    name: str
    subsets: list[str] | None = None
    data_path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("subsets", mode="before")
    @classmethod
    def _subsets(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"must be a list of subset names such as [{value!r}], got a string")
        return value

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
    result_dir: str = Field(default="results", min_length=1)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)

    @field_validator("models", mode="before")
    @classmethod
    def _model_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"must be a list of model names such as [{value!r}], got a string")
        return value

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
            f"must be a list of (name, config) pairs or a mapping {{name: config}}, got {value!r}"
        )
    from sparse_attention_hub.sparse_attention import config_from_dict

    problems: list[tuple[str, str]] = []
    entries: list[SparseEntry] = []
    for index, (name, raw) in enumerate(pairs):
        if not isinstance(name, str) or not name.strip():
            problems.append((f"[{index}]", f"a name must be a non-empty string, got {name!r}"))
            continue
        try:
            entries.append((name, config_from_dict(raw)))
        except ValidationError as exc:
            for error in exc.errors():
                sub = key_path((name, *error["loc"]))
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    fields = _sparse_fields(error["loc"][:-1])
                    message = f"unknown key; allowed: {', '.join(fields)}"
                problems.append((sub, message))
        except (ConfigError, ValueError, TypeError) as exc:
            problems.append((name, str(exc)))
    names = [name for name, _ in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(("", f"duplicate sparse config names {duplicates}"))
    if problems:
        raise KeyProblems(problems)
    return entries


def _sparse_fields(loc: tuple[Any, ...]) -> list[str]:
    """Fields of the config at `loc` inside a ResearchAttentionConfig (a masker, by its type)."""
    from sparse_attention_hub.sparse_attention import ResearchAttentionConfig
    from sparse_attention_hub.sparse_attention.maskers import MASKERS

    if not loc or loc[0] != "masker_configs" or len(loc) < 3:
        return list(ResearchAttentionConfig.model_fields)
    try:
        return list(MASKERS.get(str(loc[2])).model_fields)
    except ConfigError:
        return []


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


def spec_from_dict(data: Mapping[str, Any]) -> ExperimentSpec:
    """Validate a plain dict; every problem is listed in one ConfigError."""
    try:
        return ExperimentSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError, what: str = "the experiment spec") -> str:
    """One line per problem, `key.path[0].sub: message (allowed ...)`, at most MAX_MESSAGES."""
    problems: list[str] = []
    for error in exc.errors():
        loc = error["loc"]
        fields = list(allowed_keys((), what))
        if (
            loc
            and isinstance(loc[0], int)
            and what != "the experiment spec"
            and loc[0] < len(fields)
        ):
            loc = (fields[loc[0]], *loc[1:])  # a positional argument of a config class
        where = key_path(loc)
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, KeyProblems):
            problems += [
                f"{where}{'.' if key[:1] not in ('', '[') else ''}{key}: {message}"
                for key, message in cause.problems
            ]
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            allowed = allowed_keys(loc[:-1], what)
            message = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        elif error["type"] not in ("missing", "value_error"):
            given = error.get("input")
            message += f", got {given!r}" if _short(given) else f", got a {type(given).__name__}"
        problems.append(f"{where or '(top level)'}: {message}")
    return bullet(problems, f"in {what}")


def allowed_keys(loc: tuple[Any, ...], what: str) -> list[str]:
    """The keys a mapping at `loc` may have (for "unknown key" messages)."""
    top: dict[str, Any] = {
        "ExperimentSpec": ExperimentSpec,
        "BenchmarkConfig": BenchmarkConfig,
        "AdapterConfig": AdapterConfig,
        "ExecutionConfig": ExecutionConfig,
        "BenchmarkExecutor": ExecutionConfig,
    }
    model: Any = top.get(what, ExperimentSpec)
    nested = {"benchmarks": BenchmarkConfig, "adapter": AdapterConfig, "execution": ExecutionConfig}
    for part in loc:
        if isinstance(part, int):
            continue
        model = nested.get(str(part)) if model is ExperimentSpec else None
        if model is None:
            return []
    fields = getattr(model, "model_fields", None) or getattr(model, "__pydantic_fields__", {})
    return list(fields)


def _short(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 80
