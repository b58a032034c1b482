"""Test support (shipped so spawned workers can import it): a scripted adapter with chosen faults.

It exercises the executor in real worker processes; nothing in the library uses it. Use it as the adapter factory (`AdapterConfig(factory="sparse_attention_hub.executor.testing:
fault_adapter", model_kwargs={...})`). `model_kwargs`:
- `delay_s`: seconds per request (every job);
- `faults`: path of a JSON file `{substring of the job dir: rule}`; a rule is
  `{"action": "kill" | "raise" | "hang" | "allocate" | "enospc", "exc": "module.ClassName", "gb": 8,
  "times": 1, "on_request": 1, "delay_s": 0.2, "job_s": 1.5}` (`allocate` takes `gb` GiB on the
  worker's device: a real OOM; `job_s` sleeps once when the job starts, so a job's work is known
  exactly; `enospc` makes saving this request's answers fail as a full disk would). An action fires on the `on_request`-th request of a job run (default the first), at
  most `times` times per job dir (counted in a file there, so it holds across worker processes);
  `delay_s` overrides the per-request delay;
- `load_log`: a file that gets one line `pid model` per model load.
Each job run appends `pid` to `executions.log` in its job dir, and each answered request its
sample ids to `answered.log`, so tests count real executions and generations, and writes
`device.json`: what the worker process sees (its GPUs, torch threads, `SAH_TEST_PROBE`);
`experiment`, `read_events`, `executions` and `loads_by_pid` build and read such runs.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparse_attention_hub.adapters.base import AnswerCallback, Request, RequestResponse
from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.result_files import EVENTS, PREDICTIONS

if TYPE_CHECKING:
    from sparse_attention_hub.sparse_attention import ResearchAttentionConfig

EXECUTIONS_LOG = "executions.log"
ANSWERED_LOG = "answered.log"
_FIRED = ".faults_fired"


class FaultAdapter(ScriptedAdapter):
    """Answers `answer` after `delay_s`; kills, raises or hangs where its fault file says."""

    def __init__(
        self, model_name: str, model_kwargs: Mapping[str, Any], device: str = "cpu"
    ) -> None:
        super().__init__(default=str(model_kwargs.get("answer", "")), model_name=model_name)
        self.device = device
        self.base_delay_s = float(model_kwargs.get("delay_s", 0.0))
        faults = model_kwargs.get("faults")
        self.faults: dict[str, dict[str, Any]] = (
            json.loads(Path(faults).read_text()) if faults else {}
        )
        self.job: _JobRun | None = None  # the job whose requests come now (bundles interleave)
        self.hold: Any = None  # memory taken by an `allocate` fault

    def start_statistics(self, path: Any, keep: Any = ()) -> _JobRun:
        """Called once per job with a path inside the job dir; returns that job's handle."""
        job_dir = Path(path).parent
        with open(job_dir / EXECUTIONS_LOG, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        rule = next((r for pat, r in self.faults.items() if pat in str(job_dir)), {})
        self.job = _JobRun(job_dir, rule, float(rule.get("delay_s", self.base_delay_s)))
        self._probe_device(job_dir)
        time.sleep(float(rule.get("job_s", 0.0)))
        return self.job

    def use_statistics(self, handle: Any) -> None:
        self.job = handle

    def _probe_device(self, job_dir: Path) -> None:
        import torch

        count = torch.cuda.device_count() if self.device.startswith("cuda") else 0
        probe = {
            "pid": os.getpid(),
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device_count": count,
            "device_name": torch.cuda.get_device_name(0) if count else None,
            "threads": torch.get_num_threads(),
            "SAH_TEST_PROBE": os.environ.get("SAH_TEST_PROBE"),
        }
        (job_dir / "device.json").write_text(json.dumps(probe))

    def answer_all(self, request: Request, on_answer: AnswerCallback | None) -> RequestResponse:
        """Fire the job's fault when it is due, then answer, logging each id before its save."""
        job = self.job
        if job is None:  # used outside a benchmark run: no job, no faults
            return super().answer_all(request, on_answer)
        job.requests += 1
        rule = job.rule
        action = rule.get("action")
        due = job.requests == int(rule.get("on_request", 1))
        if action and due and self._claim_fault(job.job_dir, rule):
            if action == "allocate":
                import torch

                size = int(float(rule.get("gb", 1)) * 2**30)
                self.hold = torch.empty(size, dtype=torch.uint8, device=self.device)
            elif action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif action == "hang":
                time.sleep(3600)
            elif action == "enospc":
                on_answer = _full_disk(job.job_dir)
            elif action == "raise":
                module, _, name = str(rule.get("exc", "builtins.RuntimeError")).rpartition(".")
                raise getattr(importlib.import_module(module), name)("injected fault")
        time.sleep(job.delay_s)
        ids = request.ids()

        def logged(index: int, answer: str, info: Mapping[str, Any]) -> None:
            with open(job.job_dir / ANSWERED_LOG, "a") as handle:  # just before it is saved
                handle.write(f"{ids[index]}\n")
            if on_answer is not None:
                on_answer(index, answer, info)

        return super().answer_all(request, logged)

    def _claim_fault(self, job_dir: Path, rule: Mapping[str, Any]) -> bool:
        fired = job_dir / _FIRED
        count = len(fired.read_text().splitlines()) if fired.exists() else 0
        if count >= int(rule.get("times", 1)):
            return False
        with open(fired, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return True


def _full_disk(job_dir: Path) -> AnswerCallback:
    """A save callback that raises OSError(ENOSPC), as writing to a full disk would."""

    def save(index: int, answer: str, info: Mapping[str, Any]) -> None:
        path = job_dir / PREDICTIONS
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    return save


@dataclass
class _JobRun:
    """One job's run on the fault adapter: its dir, its fault rule, its requests so far."""

    job_dir: Path
    rule: dict[str, Any]
    delay_s: float
    requests: int = 0


def fault_adapter(
    model_name: str,
    sparse_attention_config: ResearchAttentionConfig | None,
    model_kwargs: Mapping[str, Any],
    tokenizer_kwargs: Mapping[str, Any],
    device: str,
) -> FaultAdapter:
    """Adapter factory (the signature every factory has)."""
    log = model_kwargs.get("load_log")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {model_name}\n")
    adapter = FaultAdapter(model_name, model_kwargs, device)
    adapter.set_sparse_attention_config(sparse_attention_config)
    return adapter


FACTORY = f"{__name__}:fault_adapter"


BENCHMARK: dict[str, Any] = {"name": "mock_benchmark"}  # one subset, three requests per job


def experiment(
    base: Path,
    models: list[str] | None = None,
    sparse: list[str] | None = None,
    faults: dict[str, dict[str, Any]] | None = None,
    delay_s: float = 0.0,
    benchmarks: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A plain-dict experiment (what YAML gives) on the fault adapter; results in base/results."""
    model_kwargs: dict[str, Any] = {"delay_s": delay_s, "load_log": str(base / "loads.log")}
    if faults:
        fault_file = base / "faults.json"
        fault_file.parent.mkdir(parents=True, exist_ok=True)
        fault_file.write_text(json.dumps(faults))
        model_kwargs["faults"] = str(fault_file)
    data: dict[str, Any] = {
        "models": models or ["m1"],
        "sparse_configs": {name: None for name in (sparse or ["dense"])},
        "benchmarks": benchmarks or [BENCHMARK],
        "adapter": {"factory": FACTORY, "model_kwargs": model_kwargs},
        "result_dir": str(base / "results"),
    }
    data.update(overrides)
    return data


def read_events(result_dir: Path) -> list[dict[str, Any]]:
    path = result_dir / EVENTS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def executions(job_dir: Path) -> list[str]:
    """Pids of every run of this job (one line per run)."""
    log = job_dir / EXECUTIONS_LOG
    return log.read_text().split() if log.exists() else []


def answered(job_dir: Path) -> list[str]:
    """Sample ids the adapter generated an answer for, over every run of this job."""
    log = job_dir / ANSWERED_LOG
    return log.read_text().split() if log.exists() else []


def loads_by_pid(base: Path) -> dict[str, list[str]]:
    """Models each worker process loaded, from the adapter's own `load_log`."""
    loads: dict[str, list[str]] = {}
    log = base / "loads.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        pid, model = line.split(" ", 1)
        loads.setdefault(pid, []).append(model)
    return loads
