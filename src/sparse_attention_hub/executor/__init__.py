"""The executor: spec -> pure plan (jobs) -> scheduler -> backend (local processes | debug).

Importing it starts nothing and loads no torch.
"""

from sparse_attention_hub.executor.api import BenchmarkExecutor
from sparse_attention_hub.executor.experiment_file import load_spec
from sparse_attention_hub.executor.plan import Job, JobState, plan
from sparse_attention_hub.executor.results import ExecutionResults, JobRecord
from sparse_attention_hub.executor.spec import (
    AdapterConfig,
    BenchmarkConfig,
    ExecutionConfig,
    ExperimentSpec,
    spec_from_dict,
)

__all__ = [
    "AdapterConfig",
    "BenchmarkConfig",
    "BenchmarkExecutor",
    "ExecutionConfig",
    "ExecutionResults",
    "ExperimentSpec",
    "Job",
    "JobRecord",
    "JobState",
    "load_spec",
    "plan",
    "spec_from_dict",
]
