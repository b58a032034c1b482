"""Benchmarks: base class, registry, shared scorers, one module per benchmark."""

from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.registry import (
    BENCHMARKS,
    create_benchmark_instance,
    get_benchmark_class,
    list_benchmarks,
    register_benchmark,
)

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "create_benchmark_instance",
    "get_benchmark_class",
    "list_benchmarks",
    "register_benchmark",
]
