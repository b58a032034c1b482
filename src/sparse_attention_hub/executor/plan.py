"""The pure plan: an ExperimentSpec -> one Job per (model, sparse config, benchmark, subset).

No processes, no writes: expansion, validation (every problem at once), result paths and
fingerprints, and each job's state read from its result dir (complete / stale / failed / pending).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from sparse_attention_hub.benchmark.registry import create_benchmark_instance, get_benchmark_class
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.confine import path_problems
from sparse_attention_hub.executor.problems import bullet
from sparse_attention_hub.executor.results import changed_inputs, inspect_job
from sparse_attention_hub.executor.spec import AdapterConfig, ExperimentSpec
from sparse_attention_hub.hashing import canonical_json, json_sha256
from sparse_attention_hub.result_files import JOB_FILES, LOCK_FILE, RUN_FILES
from sparse_attention_hub.sparse_attention.config import ResearchAttentionConfig, config_fingerprint

MAX_PATH_PART = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


class JobState(str, Enum):
    COMPLETE = "complete"
    STALE = "stale"
    CORRUPT = "corrupt"  # its files are damaged: resumed from its predictions
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True)
class Job:
    """One cell of the matrix: everything a worker needs, and where its results go."""

    job_id: str  # result dir relative to the base, posix: model/sparse/benchmark_subset
    model: str
    sparse_name: str
    sparse_config: ResearchAttentionConfig | None  # None: dense
    benchmark: str
    subset: str
    data_path: str | None
    options: dict[str, Any]
    adapter: AdapterConfig
    generation_kwargs: dict[str, Any]
    request_kwargs: dict[str, Any]
    fingerprint: str
    result_dir: Path
    state: JobState = JobState.PENDING
    problem: str = ""  # what is wrong with a corrupt job's files
    inputs: dict[str, Any] = field(default_factory=dict, repr=False)  # what the fingerprint hashes

    def stale_reason(self) -> str:
        """What changed since the results in this job's dir were made, e.g. `generation_kwargs`."""
        changed = changed_inputs(self.result_dir, self.inputs)
        return f"{', '.join(changed) if changed else 'parameters'} changed"

    @property
    def model_key(self) -> str:
        """Jobs with the same key can share a loaded model (only the sparse config differs)."""
        return canonical_json({"model": self.model, "adapter": self.adapter.to_dict()})


def fingerprint_of(payload: Any) -> str:
    """A job's fingerprint: the first 16 hex digits of its inputs' canonical-JSON SHA-256."""
    return json_sha256(payload)[:16]


def sanitize(name: str) -> str:
    """A single safe path component: `org/model` -> `org__model`; never empty, `.` or `..`."""
    text = _UNSAFE.sub("_", name.replace("\\", "/").replace("/", "__")).strip("._")
    if len(text) > MAX_PATH_PART:
        text = f"{text[: MAX_PATH_PART - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    if not text:
        raise ConfigError(f"name {name!r} has no characters usable in a path")
    return text


def package_version() -> str:
    from sparse_attention_hub import __version__

    return __version__


def plan(
    spec: ExperimentSpec,
    result_dir: str | Path | None = None,
    gpu_ids: list[int] | None = None,
    device_count: int | None = None,
    backend: str | None = None,
) -> list[Job]:
    """Every job of the matrix with its state; raises one ConfigError listing every problem.

    `gpu_ids`, when given, are checked against the CUDA devices that exist (`device_count`, or
    counted with torch) in the same pass, so a wrong id is reported with everything else; so is
    a `backend` whose packages are missing (ray without the `ray` extra).
    """
    base = Path(result_dir if result_dir is not None else spec.result_dir).absolute()
    problems = _check_models(spec) + _check_result_dir(base)
    if gpu_ids:
        problems += _gpu_id_problems(gpu_ids, device_count)
    if backend is not None:
        from sparse_attention_hub.executor.backends import backend_problems

        problems += backend_problems(backend)
    cells, benchmark_problems = benchmark_cells(spec)
    problems += benchmark_problems
    problems += _check_sanitized("models", spec.models)
    problems += _check_sanitized("sparse_configs", [name for name, _ in spec.sparse_configs])
    if problems:
        raise ConfigError(bullet(problems))

    version = package_version()
    jobs = [
        _job(spec, base, model, sparse, cell, version)
        for model in spec.models
        for sparse in spec.sparse_configs
        for cell in cells
    ]
    duplicates = sorted(job_id for job_id, n in Counter(j.job_id for j in jobs).items() if n > 1)
    if duplicates:
        raise ConfigError(f"jobs share a result dir (benchmark/subset names collide): {duplicates}")
    problems = tree_problems(base, jobs)
    if problems:
        raise ConfigError(bullet(problems))
    return jobs


Cell = tuple[int, str, dict[str, Any]]  # benchmark index, subset, options that change its rows


def benchmark_cells(spec: ExperimentSpec) -> tuple[list[Cell], list[str]]:
    """(every benchmark subset to run, in spec order; the problems found on the way).

    Each benchmark's name, subsets, data path and options are checked by building it per subset.
    """
    cells: list[Cell] = []
    problems: list[str] = []
    for index, bench in enumerate(spec.benchmarks):
        where = f"benchmarks[{index}]"
        problems += _data_path_problems(f"{where}.data_path", bench.data_path)
        try:
            cls = get_benchmark_class(bench.name)
        except ConfigError as exc:
            problems.append(f"{where}.name: {exc}")
            continue
        unknown = [s for s in bench.subsets or [] if s not in cls.all_datasets]
        if unknown:
            problems.append(
                f"{where}.subsets: unknown subset(s) {unknown} of {bench.name!r}; "
                f"allowed: {', '.join(cls.all_datasets)}"
            )
            continue
        try:
            for subset in bench.subsets or cls.all_datasets:
                instance = create_benchmark_instance(
                    bench.name, [subset], bench.data_path, **bench.options
                )
                cells.append((index, subset, instance.options()))
        except (ConfigError, TypeError, ValueError) as exc:
            problems.append(f"{where}.options: {bench.name!r}: {exc}")
    return cells, problems


def _job(
    spec: ExperimentSpec,
    base: Path,
    model: str,
    sparse: tuple[str, Any],
    cell: Cell,
    version: str,
) -> Job:
    """One job: its result dir, the inputs its fingerprint hashes, its state on disk."""
    sparse_name, config = sparse
    index, subset, options = cell
    bench = spec.benchmarks[index]
    inputs = {
        "model": model,
        "adapter": spec.adapter.to_dict(),
        "sparse_config": config_fingerprint(config),
        "benchmark": bench.name,
        "subset": subset,
        "benchmark_options": options,
        "generation_kwargs": spec.generation_kwargs,
        "request_kwargs": spec.request_kwargs,
        "version": version,
    }
    job_id = "/".join(
        (sanitize(model), sanitize(sparse_name), f"{sanitize(bench.name)}_{sanitize(subset)}")
    )
    fingerprint = fingerprint_of(inputs)
    state, problem = inspect_job(base / job_id, fingerprint)
    return Job(
        job_id=job_id,
        model=model,
        sparse_name=sparse_name,
        sparse_config=config,
        benchmark=bench.name,
        subset=subset,
        data_path=bench.data_path,
        options=dict(bench.options),
        adapter=spec.adapter,
        generation_kwargs=dict(spec.generation_kwargs),
        request_kwargs=dict(spec.request_kwargs),
        fingerprint=fingerprint,
        result_dir=base / job_id,
        state=JobState(state),
        problem=problem,
        inputs=inputs,
    )


def tree_problems(base: Path, jobs: list[Job]) -> list[str]:
    """Paths the run would write or delete that lead out of `base`, or cannot be written."""
    problems = [f"result_dir: {p}" for p in path_problems(base, base, RUN_FILES)]
    for job in jobs:
        for problem in path_problems(base, job.result_dir, (*JOB_FILES, LOCK_FILE)):
            if f"result_dir: {problem}" not in problems:
                problems.append(f"result_dir: {problem}")
    return problems


def check_gpu_ids(gpu_ids: list[int], device_count: int | None = None) -> None:
    """Every id must name an existing CUDA device; counted with torch only when ids are given."""
    problems = _gpu_id_problems(gpu_ids, device_count) if gpu_ids else []
    if problems:
        raise ConfigError(problems[0])


def _gpu_id_problems(gpu_ids: list[int], device_count: int | None) -> list[str]:
    if device_count is None:
        import torch

        device_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [i for i in gpu_ids if i >= device_count]
    if not missing:
        return []
    return [
        f"execution.gpu_ids: gpu id(s) {missing} do not exist: this machine has {device_count} CUDA device(s)"
        + (f" (valid ids 0..{device_count - 1})" if device_count else "; omit gpu_ids for CPU")
    ]


def _check_models(spec: ExperimentSpec) -> list[str]:
    """Cheap checks only: the factory imports, and model names resolve to a source."""
    if spec.adapter.factory is not None:
        try:
            load_factory(spec.adapter.factory)
        except ConfigError as exc:
            return [f"adapter.factory: {exc}"]
        return []
    from sparse_attention_hub.adapters.sources import resolve_model_source

    problems = []
    for index, model in enumerate(spec.models):
        try:
            resolve_model_source(model)
        except (ConfigError, ValueError, OSError) as exc:
            problems.append(f"models[{index}]: {exc}")
    return problems


FACTORY_ARGS = (
    "model_name",
    "sparse_attention_config",
    "model_kwargs",
    "tokenizer_kwargs",
    "device",
)


def load_factory(path: str) -> Any:
    """Import `"module:callable"` and check it takes the five adapter arguments.

    A clear ConfigError when it cannot be imported or called that way. Note: the module is
    imported, so its top-level code runs (an experiment file may name Python code to import).
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"must be 'module:callable', got {path!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{path!r} cannot be imported: {exc}") from None
    if not callable(factory):
        raise ConfigError(f"{path!r} is not callable")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return factory  # a builtin without a signature: it is called and judged in the worker
    try:
        signature.bind(*FACTORY_ARGS)
    except TypeError as exc:
        raise ConfigError(
            f"{path!r} cannot be called as factory({', '.join(FACTORY_ARGS)}): {exc}"
        ) from None
    return factory


def _data_path_problems(where: str, data_path: str | None) -> list[str]:
    if data_path is None:
        return []
    path = Path(data_path)
    if not path.exists():
        return [f"{where}: {data_path} does not exist (a local copy of the data, or omit it)"]
    if path.is_dir() and not any(path.iterdir()):
        return [f"{where}: {data_path} is an empty directory (expected the data files in it)"]
    return []


def plan_warnings(spec: ExperimentSpec) -> list[str]:
    """Things that are allowed but worth a line in the log and the dry run."""
    warnings = []
    for key in ("model_kwargs", "tokenizer_kwargs"):
        if getattr(spec.adapter, key).get("trust_remote_code"):
            warnings.append(
                f"adapter.{key}.trust_remote_code is true: loading a model may run Python code "
                "that comes with it from the hub"
            )
    return warnings


def _check_result_dir(base: Path) -> list[str]:
    existing = base
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return [f"result_dir: {existing} exists and is not a directory (result dir {base})"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"result_dir: {existing} is not writable (result dir {base})"]
    return []


def _check_sanitized(kind: str, values: list[str]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for value in values:
        try:
            safe = sanitize(value)
        except ConfigError as exc:
            problems.append(f"{kind}: {exc}")
            continue
        if safe in seen and seen[safe] != value:
            problems.append(
                f"{kind}: names {seen[safe]!r} and {value!r} map to the same dir {safe!r}"
            )
        seen[safe] = value
    return problems
