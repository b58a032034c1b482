"""sparse-attention-hub: how much accuracy does each sparse-attention method keep?

One import serves a user script. Names load lazily, so `import sparse_attention_hub` stays cheap
and patches nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXECUTOR = "sparse_attention_hub.executor"
_ADAPTERS = "sparse_attention_hub.adapters"
_BENCHMARK = "sparse_attention_hub.benchmark"
_SPARSE = "sparse_attention_hub.sparse_attention"

_EXPORTS: dict[str, str] = {
    "BenchmarkExecutor": _EXECUTOR,
    "BenchmarkConfig": _EXECUTOR,
    "AdapterConfig": _EXECUTOR,
    "ExecutionResults": _EXECUTOR,
    "ModelAdapterHF": _ADAPTERS,
    "ModelAdapter": _ADAPTERS,
    "Request": _ADAPTERS,
    "RequestResponse": _ADAPTERS,
    "Benchmark": _BENCHMARK,
    "create_benchmark_instance": _BENCHMARK,
    "list_benchmarks": _BENCHMARK,
    "SparseAttentionConfig": _SPARSE,
    "ResearchAttentionConfig": _SPARSE,
    "SinkMaskerConfig": _SPARSE,
    "LocalMaskerConfig": _SPARSE,
    "OracleTopKConfig": _SPARSE,
    "OracleTopPConfig": _SPARSE,
    "QuestTopKConfig": _SPARSE,
    "HashAttentionTopKConfig": _SPARSE,
    "DoubleSparsityTopKConfig": _SPARSE,
    "RandomSamplingConfig": _SPARSE,
    "AdaptiveSamplingConfig": _SPARSE,
    "MagicPigConfig": _SPARSE,
    "get_preset": _SPARSE,
}

__all__ = [
    "AdapterConfig",
    "AdaptiveSamplingConfig",
    "Benchmark",
    "BenchmarkConfig",
    "BenchmarkExecutor",
    "DoubleSparsityTopKConfig",
    "ExecutionResults",
    "HashAttentionTopKConfig",
    "LocalMaskerConfig",
    "MagicPigConfig",
    "ModelAdapter",
    "ModelAdapterHF",
    "OracleTopKConfig",
    "OracleTopPConfig",
    "QuestTopKConfig",
    "RandomSamplingConfig",
    "Request",
    "RequestResponse",
    "ResearchAttentionConfig",
    "SinkMaskerConfig",
    "SparseAttentionConfig",
    "__version__",
    "create_benchmark_instance",
    "get_preset",
    "list_benchmarks",
]

if TYPE_CHECKING:
    from sparse_attention_hub.adapters import ModelAdapter, ModelAdapterHF, Request, RequestResponse
    from sparse_attention_hub.benchmark import Benchmark, create_benchmark_instance, list_benchmarks
    from sparse_attention_hub.executor import (
        AdapterConfig,
        BenchmarkConfig,
        BenchmarkExecutor,
        ExecutionResults,
    )
    from sparse_attention_hub.sparse_attention import (
        AdaptiveSamplingConfig,
        DoubleSparsityTopKConfig,
        HashAttentionTopKConfig,
        LocalMaskerConfig,
        MagicPigConfig,
        OracleTopKConfig,
        OracleTopPConfig,
        QuestTopKConfig,
        RandomSamplingConfig,
        ResearchAttentionConfig,
        SinkMaskerConfig,
        SparseAttentionConfig,
        get_preset,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparse_attention_hub' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
