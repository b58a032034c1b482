"""A scripted adapter whose faults a test chooses, for exercising the executor in real workers.

Use it as the adapter factory (`AdapterConfig(factory="sparse_attention_hub.executor.testing:
fault_adapter", model_kwargs={...})`). `model_kwargs`:
- `delay_s`: seconds per request (every job);
- `faults`: path of a JSON file `{substring of the job dir: rule}`; a rule is
  `{"action": "kill" | "raise" | "hang", "exc": "module.ClassName", "times": 1, "delay_s": 0.2}`.
  An action fires on the first request of the job, at most `times` times per job dir (counted
  in a file there, so it holds across worker processes); `delay_s` overrides the per-request delay;
- `load_log`: a file that gets one line `pid model` per model load.
Each job run appends `pid` to `executions.log` in its job dir, so tests count real executions.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sparse_attention_hub.adapters.base import Request, RequestResponse
from sparse_attention_hub.adapters.scripted import ScriptedAdapter

EXECUTIONS_LOG = "executions.log"
_FIRED = ".faults_fired"


class FaultAdapter(ScriptedAdapter):
    """Answers `answer` after `delay_s`; kills, raises or hangs where its fault file says."""

    def __init__(self, model_name: str, model_kwargs: Mapping[str, Any]) -> None:
        super().__init__(default=str(model_kwargs.get("answer", "")), model_name=model_name)
        self.base_delay_s = float(model_kwargs.get("delay_s", 0.0))
        faults = model_kwargs.get("faults")
        self.faults: dict[str, dict[str, Any]] = (
            json.loads(Path(faults).read_text()) if faults else {}
        )
        self.job_dir: Path | None = None
        self.rule: dict[str, Any] = {}

    def start_statistics(self, path: Any) -> None:
        """run_benchmark calls this once per job with a path inside the job dir."""
        self.job_dir = Path(path).parent
        with open(self.job_dir / EXECUTIONS_LOG, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        self.rule = next((r for pat, r in self.faults.items() if pat in str(self.job_dir)), {})
        self.delay_s = float(self.rule.get("delay_s", self.base_delay_s))

    def process_request(
        self, request: Request, generation_kwargs: Mapping[str, Any], request_kwargs: Mapping[str, Any]
    ) -> RequestResponse:
        action = self.rule.get("action")
        if action and self.job_dir is not None and self._claim_fault():
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif action == "hang":
                time.sleep(3600)
            elif action == "raise":
                module, _, name = str(self.rule.get("exc", "builtins.RuntimeError")).rpartition(".")
                raise getattr(importlib.import_module(module), name)("injected fault")
        return super().process_request(request, generation_kwargs, request_kwargs)

    def _claim_fault(self) -> bool:
        assert self.job_dir is not None
        fired = self.job_dir / _FIRED
        count = len(fired.read_text().splitlines()) if fired.exists() else 0
        if count >= int(self.rule.get("times", 1)):
            return False
        with open(fired, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return True


def fault_adapter(
    model_name: str,
    sparse_attention_config: Any,
    model_kwargs: Mapping[str, Any],
    tokenizer_kwargs: Mapping[str, Any],
    device: str,
) -> FaultAdapter:
    """Adapter factory (the signature every factory has)."""
    log = model_kwargs.get("load_log")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {model_name}\n")
    adapter = FaultAdapter(model_name, model_kwargs)
    adapter.set_sparse_attention_config(sparse_attention_config)
    return adapter


FACTORY = f"{__name__}:fault_adapter"
