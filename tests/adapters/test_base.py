"""The `ModelAdapter` contract's defaults: what a minimal adapter (only `process_request`) gets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sparse_attention_hub.adapters.base import (
    AnswerCallback,
    ModelAdapter,
    Request,
    RequestResponse,
)
from sparse_attention_hub.benchmark.mock_benchmark import MockBenchmark
from sparse_attention_hub.executor.worker import check_model_device


class Echo(ModelAdapter):
    """Answers every question with its own text; no weights, no sparse configs."""

    def __init__(self) -> None:
        self.model_name = "echo"

    def process_request(
        self,
        request: Request,
        generation_kwargs: Mapping[str, Any],
        request_kwargs: Mapping[str, Any],
        on_answer: AnswerCallback | None = None,
    ) -> RequestResponse:
        return RequestResponse(request.questions)


def test_a_minimal_adapter_describes_itself_and_has_no_model() -> None:
    adapter = Echo()
    assert adapter.describe() == {"adapter": "Echo", "model_name": "echo"}
    assert adapter.model is None
    check_model_device(adapter, "cuda:7")  # no weights: nothing to misplace


def test_the_job_config_records_the_description(tmp_path: Path) -> None:
    MockBenchmark().run_benchmark(Echo(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == "echo"
    assert config["adapter"] == {"adapter": "Echo", "model_name": "echo"}
