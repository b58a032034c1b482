"""`BenchmarkExecutor`: plan the matrix, run what is missing, write the run's records.

executor = BenchmarkExecutor(gpu_ids=[0, 1], max_concurrent_runs=4, base_result_dir="results")
results = executor.run_benchmark_matrix(
    model_names=["smollm2-135m-instruct"],
    sparse_attention_configs=[("dense", None), ("streaming", get_preset("streaming"))],
    benchmark_configs=[BenchmarkConfig("ruler_synthetic", ["niah_single_1"])],
)
"""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.backends import create_backend, slot_layout
from sparse_attention_hub.executor.plan import Job, JobState, plan, plan_warnings
from sparse_attention_hub.executor.problems import format_validation_error
from sparse_attention_hub.executor.progress import RunRecorder
from sparse_attention_hub.executor.results import (
    ExecutionResults,
    JobRecord,
    write_results_csv,
    write_summary,
)
from sparse_attention_hub.executor.scheduler import Scheduler
from sparse_attention_hub.executor.spec import (
    AdapterConfig,
    BenchmarkConfig,
    ExecutionConfig,
    ExperimentSpec,
    spec_from_dict,
)

logger = logging.getLogger(__name__)


class BenchmarkExecutor:
    """Runs models x sparse configs x benchmarks x subsets on `max_concurrent_runs` workers.

    `gpu_ids` empty or None means CPU workers. Finished jobs are never redone; changed parameters
    under an old name are reported as stale and left alone unless `rerun_stale`; jobs that failed
    in an earlier run are rerun only with `rerun_failed`.
    """

    def __init__(
        self,
        gpu_ids: Sequence[int] | None = None,
        max_concurrent_runs: int = 1,
        base_result_dir: str | Path = "results",
        max_retries: int = 1,
        job_timeout_s: float | None = None,
        gpu_memory_fraction: float | None = None,
        backend: str = "local",
        ray_address: str | None = None,
        runs_per_gpu: int = 1,
        rerun_failed: bool = False,
        rerun_stale: bool = False,
        progress: bool | None = None,
        share_prefill: bool = True,
    ) -> None:
        try:
            self.execution = ExecutionConfig(
                gpu_ids=gpu_ids if isinstance(gpu_ids, (str, int)) else list(gpu_ids or []),
                max_concurrent_runs=max_concurrent_runs,
                max_retries=max_retries,
                job_timeout_s=job_timeout_s,
                gpu_memory_fraction=gpu_memory_fraction,
                backend=backend,
                ray_address=ray_address,
                runs_per_gpu=runs_per_gpu,
                share_prefill=share_prefill,
            )
        except ValidationError as exc:
            raise ConfigError(
                format_validation_error(exc, ExecutionConfig, "BenchmarkExecutor")
            ) from None
        self.base_result_dir = Path(base_result_dir)
        self.rerun_failed = rerun_failed
        self.rerun_stale = rerun_stale
        self.progress = progress

    @classmethod
    def from_spec(cls, spec: ExperimentSpec, **overrides: Any) -> BenchmarkExecutor:
        options: dict[str, Any] = {
            **spec.execution.model_dump(),
            "base_result_dir": spec.result_dir,
        }
        options.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**options)

    def run_benchmark_matrix(
        self,
        model_names: Sequence[str],
        sparse_attention_configs: Sequence[tuple[str, Any]] = (("dense", None),),
        benchmark_configs: Sequence[BenchmarkConfig] = (),
        adapter_config: AdapterConfig | None = None,
        generation_kwargs: Mapping[str, Any] | None = None,
        request_kwargs: Mapping[str, Any] | None = None,
    ) -> ExecutionResults:
        spec = spec_from_dict(
            {
                "models": _as_list(model_names),
                "sparse_configs": _as_list(sparse_attention_configs),
                "benchmarks": _as_list(benchmark_configs),
                "adapter": adapter_config or AdapterConfig(),
                "generation_kwargs": dict(generation_kwargs or {}),
                "request_kwargs": dict(request_kwargs or {}),
                "result_dir": str(self.base_result_dir),
                "execution": self.execution,
            }
        )
        return self.run(spec)

    def plan(self, spec: ExperimentSpec) -> list[Job]:
        """The jobs with their states, after every check that needs no worker."""
        return plan(
            spec,
            self.base_result_dir,
            gpu_ids=self.execution.gpu_ids,
            backend=self.execution.backend,
        )

    def to_run(self, jobs: list[Job]) -> list[Job]:
        wanted = {JobState.PENDING, JobState.CORRUPT}
        if self.rerun_failed:
            wanted.add(JobState.FAILED)
        if self.rerun_stale:
            wanted.add(JobState.STALE)
        return [j for j in jobs if j.state in wanted]

    def run(self, spec: ExperimentSpec) -> ExecutionResults:
        """Run the spec's missing jobs; results go under this executor's `base_result_dir`."""
        jobs = self.plan(spec)
        for warning in plan_warnings(spec):
            logger.warning("%s", warning)
        todo = self.to_run(jobs)
        base = self.base_result_dir.absolute()
        run_id = uuid.uuid4().hex[:12]
        todo_ids = {j.job_id for j in todo}
        for job in jobs:
            if job.state == JobState.CORRUPT:
                logger.warning(
                    "corrupt (%s; resumed from its predictions): %s", job.problem, job.job_id
                )
            if job.state == JobState.STALE and job.job_id not in todo_ids:
                logger.warning(
                    "stale (%s; left as is, --rerun-stale replaces it): %s",
                    job.stale_reason(),
                    job.job_id,
                )
        prepare_result_dir(base)
        slots = slot_layout(self.execution.gpu_ids, self.execution.max_concurrent_runs)
        backend = create_backend(
            self.execution.backend,
            slots,
            gpu_memory_fraction=self.execution.gpu_memory_fraction,
            ray_address=self.execution.ray_address,
            runs_per_gpu=self.execution.runs_per_gpu,
        )
        recorder = RunRecorder(base, run_id, display=self._display())
        recorder.event(
            "run_started",
            planned=len(jobs),
            to_run=len(todo),
            backend=self.execution.backend,
            slots=[s.device for s in backend.slots],
            share_prefill=self.execution.share_prefill,
        )
        scheduler = Scheduler(
            todo,
            backend,
            recorder,
            max_retries=self.execution.max_retries,
            job_timeout_s=self.execution.job_timeout_s,
            reset={j.job_id for j in todo if j.state == JobState.STALE},
            already_done=sum(j.state == JobState.COMPLETE for j in jobs),
            total=len(jobs),
            share_prefill=self.execution.share_prefill,
        )
        t0 = time.monotonic()
        try:
            with _sigterm_as_interrupt():
                outcome = scheduler.run()
            results = ExecutionResults(
                result_dir=base,
                records=[outcome.records.get(j.job_id) or _unrun_record(j) for j in jobs],
                wall_s=time.monotonic() - t0,
                interrupted=outcome.interrupted,
                run_id=run_id,
                extra={  # what was wrong with each job found corrupt (then resumed)
                    "corrupt_at_start": {
                        j.job_id: j.problem for j in jobs if j.state == JobState.CORRUPT
                    }
                },
            )
            not_complete = {j.job_id for j in jobs if j.state != JobState.COMPLETE}
            write_results_csv(base, exclude=not_complete - _completed_now(results))
            write_summary(base, results)
            recorder.event("run_finished", interrupted=results.interrupted, **results.counts())
        finally:
            recorder.close()
        return results

    def _display(self) -> bool:
        if self.progress is not None:
            return self.progress
        import sys

        return sys.stderr.isatty()


def _completed_now(results: ExecutionResults) -> set[str]:
    return {r.job_id for r in results.records if r.state == "complete"}


def prepare_result_dir(base: Path) -> None:
    """Create the result dir and prove it takes files; one ConfigError line if it does not.

    The plan only looks (it writes nothing); a dir such as /proc/x looks writable and is not.
    """
    try:
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=base, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"result_dir {base}: cannot write there ({exc.strerror or exc})"
        ) from None


def _as_list(value: Any) -> Any:
    """A sequence as a list; a str or mapping as itself, so the spec names what to pass."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        return value
    return list(value)


def _unrun_record(job: Job) -> JobRecord:
    return JobRecord(
        job_id=job.job_id,
        model=job.model,
        sparse_config=job.sparse_name,
        benchmark=job.benchmark,
        subset=job.subset,
        state=job.state.value,
        error=job.stale_reason() if job.state == JobState.STALE else (job.problem or None),
    )


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a run like Ctrl-C: stop dispatch, end workers, keep what finished."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
