"""The benchmark registry: `@register_benchmark("name")` on a class, look-up with suggestions."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.registry import Registry

BENCHMARKS: Registry[type[Benchmark]] = Registry("benchmark")

# Modules of this package that hold machinery, not benchmarks.
_NOT_BENCHMARKS = {"base", "registry", "scorers", "loading", "grouping", "results_io"}
_loaded = False


def register_benchmark(name: str, *aliases: str) -> Callable[[type[Benchmark]], type[Benchmark]]:
    def decorator(cls: type[Benchmark]) -> type[Benchmark]:
        if cls.benchmark_name != name:
            raise TypeError(
                f"{cls.__name__}.benchmark_name is {cls.benchmark_name!r}, registered as {name!r}"
            )
        BENCHMARKS.add(name, cls, *aliases)
        return cls

    return decorator


def benchmark_modules() -> list[str]:
    """The modules that register benchmarks (every module of this package but its machinery)."""
    package = importlib.import_module("sparse_attention_hub.benchmark")
    return [
        f"sparse_attention_hub.benchmark.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if info.name not in _NOT_BENCHMARKS and not info.name.startswith("_") and not info.ispkg
    ]


def _discover() -> None:
    """Import every benchmark module once, so registering is just adding one file."""
    global _loaded
    if _loaded:
        return
    for module in benchmark_modules():
        importlib.import_module(module)
    _loaded = True


def get_benchmark_class(name: str) -> type[Benchmark]:
    _discover()
    return BENCHMARKS.get(name)


def list_benchmarks() -> dict[str, list[str]]:
    """Every benchmark name with its subsets."""
    _discover()
    return {name: list(BENCHMARKS.get(name).all_datasets) for name in BENCHMARKS.names()}


def create_benchmark_instance(
    name: str,
    subsets: Sequence[str] | None = None,
    data_path: str | Path | None = None,
    **options: Any,
) -> Benchmark:
    """Build a benchmark by registered name; unknown names, subsets and options raise before any
    loading, each with the list of what is allowed."""
    cls = get_benchmark_class(name)
    allowed = benchmark_options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"benchmark {name!r} has no option(s) {unknown}; "
            f"its options: {', '.join(allowed) if allowed else 'none'}"
        )
    return cls(subsets_to_run=subsets, data_path=data_path, **options)


def benchmark_options(cls: type[Benchmark]) -> list[str]:
    """Keyword options of a benchmark's constructor besides `subsets_to_run` and `data_path`."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        p.name
        for p in parameters
        if p.kind in kinds and p.name not in ("self", "subsets_to_run", "data_path")
    ]
