"""Jobs whose cost the plan knows: a scripted benchmark and an adapter that sleeps per token.

Used by `scheduler.py` (workers import it as the adapter factory, which registers the benchmark
in their process too). `scripted_work` subsets hold `samples` requests of `context_tokens` words;
the adapter sleeps `seconds_per_token` x context words per request, so a job's real work is the
plan's estimate (samples x context tokens) times that rate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.adapters.base import AnswerCallback, Request, RequestResponse
from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.loading import normalise_rows
from sparse_attention_hub.benchmark.registry import BENCHMARKS, register_benchmark
from sparse_attention_hub.executor.testing import FaultAdapter

FACTORY = "_scripted_work:scripted_work_adapter"


class ScriptedWork(Benchmark):
    benchmark_name = "scripted_work"
    all_datasets: ClassVar[list[str]] = [f"w{i:02d}" for i in range(64)]

    def __init__(
        self,
        subsets_to_run: Sequence[str] | None = None,
        data_path: str | Path | None = None,
        *,
        samples: int = 1,
        context_tokens: int = 100,
    ) -> None:
        super().__init__(subsets_to_run, data_path)
        self.samples, self.context_tokens = samples, context_tokens

    def options(self) -> dict[str, Any]:
        return {"samples": self.samples, "context_tokens": self.context_tokens}

    def estimated_work(self) -> float:
        return float(len(self.subsets_to_run) * self.samples * self.context_tokens)

    def load_subset(self, subset: str) -> pd.DataFrame:
        rows = [
            {
                "id": str(i),
                "context": " ".join([f"{subset}-{i}"] + ["x"] * (self.context_tokens - 1)),
                "question": "q",
                "answers": ["a"],
                "max_new_tokens": 1,
            }
            for i in range(self.samples)
        ]
        return normalise_rows(pd.DataFrame(rows), subset)

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"score": [1.0] * len(rows)}, index=rows.index)


if "scripted_work" not in BENCHMARKS.names():
    register_benchmark("scripted_work")(ScriptedWork)


class ScriptedWorkAdapter(FaultAdapter):
    def process_request(
        self,
        request: Request,
        generation_kwargs: Mapping[str, Any],
        request_kwargs: Mapping[str, Any],
        on_answer: AnswerCallback | None = None,
    ) -> RequestResponse:
        time.sleep(self.seconds_per_token * len(request.context.split()))
        return super().process_request(request, generation_kwargs, request_kwargs, on_answer)


def scripted_work_adapter(
    model_name: str,
    sparse_attention_config: Any,
    model_kwargs: Mapping[str, Any],
    tokenizer_kwargs: Mapping[str, Any],
    device: str,
) -> ScriptedWorkAdapter:
    adapter = ScriptedWorkAdapter(model_name, {"answer": "a"}, device)
    adapter.seconds_per_token = float(model_kwargs.get("seconds_per_token", 0.0))
    adapter.set_sparse_attention_config(sparse_attention_config)
    return adapter
