"""What a worker does with a bundle, whatever process it lives in (local child, Ray actor, in-process).

A bundle is jobs that differ only in their sparse config: the worker walks their requests once,
one context prefill each (`benchmark.bundle`). A worker keeps its model across bundles of that
model and swaps only the sparse config; it frees the model when the next one needs another. Each benchmark subset is loaded once per worker
(per model, for benchmarks that size their samples with the model's tokenizer).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from sparse_attention_hub.adapters.base import AdapterFactory, ModelAdapter
from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.bundle import JobTarget, run_jobs
from sparse_attention_hub.benchmark.registry import create_benchmark_instance, get_benchmark_class
from sparse_attention_hub.errors import ModelLoadError
from sparse_attention_hub.executor.bundles import Bundle
from sparse_attention_hub.executor.failures import (
    CUDA_OOM,
    OTHER,
    category_of_exception,
    failure_from_exception,
)
from sparse_attention_hub.executor.plan import Job, canonical_json, load_factory
from sparse_attention_hub.executor.results import write_manifest

if TYPE_CHECKING:
    from sparse_attention_hub.sparse_attention import ResearchAttentionConfig

logger = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], None]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Worker:
    """Runs bundles one at a time on one device, holding at most one model."""

    def __init__(
        self, worker_id: int, device: str, notify: Notify | None = None, label: str | None = None
    ) -> None:
        self.worker_id = worker_id
        self.device = device  # as torch sees it here (a pinned GPU is always cuda:0)
        self.label = label or device  # as the user named it (cuda:3), for the records
        self.notify: Notify = notify or (lambda kind, payload: None)
        self.adapter: ModelAdapter | None = None
        self.model_key: str | None = None
        self._benchmarks: dict[str, Benchmark] = {}

    def execute(self, bundle: Bundle) -> None:
        """Run a bundle; the process boundary: every outcome is a message, nothing is raised.

        Messages (through `notify`): `started` {bundle_id, job_ids}, then for each job exactly
        one `finished` {job_id, duration_s, overall, timing} or `raised` {job_id, failure}, in
        the order the jobs end; `model_loaded` / `dataset_loaded` as they happen.
        """
        self.notify("started", {"bundle_id": bundle.bundle_id, "job_ids": bundle.job_ids})
        reported: set[int] = set()
        oom = False

        def report(index: int, result: Mapping[str, Any] | BaseException) -> None:
            nonlocal oom
            job = bundle.jobs[index]
            reported.add(index)
            if isinstance(result, BaseException):
                failure = failure_from_exception(result)
                oom = oom or failure.category == CUDA_OOM
                logger.error("job %s failed: %s", job.job_id, failure.message)
                self.notify("raised", {"job_id": job.job_id, "failure": failure.to_dict()})
            else:
                self.notify("finished", {"job_id": job.job_id, **result})

        try:
            self.run(bundle, report)
        except Exception as exc:  # before or between the jobs: it ends every job not yet ended
            for index in range(len(bundle.jobs)):
                if index not in reported:
                    report(index, exc)
        if oom:
            self.release_model()  # a half-allocated model is no use to the next job

    def run(
        self,
        bundle: Bundle,
        report: Callable[[int, Mapping[str, Any] | BaseException], None],
    ) -> None:
        """Load (or keep) the model and the data, then walk the bundle's requests once."""
        started, t0 = now_iso(), time.perf_counter()
        first = bundle.jobs[0]
        adapter = self._adapter_for(first)
        benchmark = self._benchmark_for(first, adapter)
        targets = [
            JobTarget(
                job.result_dir,
                job.sparse_config,
                self._job_info(job, attempt, bundle),
                on_saved=partial(self._answered, job.job_id),
            )
            for job, attempt in zip(bundle.jobs, bundle.attempts, strict=True)
        ]

        def done(index: int, result: dict[str, Any] | BaseException) -> None:
            if isinstance(result, BaseException):
                report(index, result)
                return
            job, attempt = bundle.jobs[index], bundle.attempts[index]
            duration = time.perf_counter() - t0
            try:
                write_manifest(
                    job.result_dir,
                    {
                        "job_id": job.job_id,
                        "fingerprint": job.fingerprint,
                        "inputs": job.inputs,
                        "model": job.model,
                        "sparse_config": job.sparse_name,
                        "benchmark": job.benchmark,
                        "subset": job.subset,
                        "attempt": attempt,
                        "worker": self.worker_id,
                        "pid": os.getpid(),
                        "device": self.label,
                        "bundle": bundle.job_ids,
                        "started_at": started,
                        "finished_at": now_iso(),
                        "duration_s": duration,
                        "overall": result.get("overall"),
                        "timing": result.get("timing"),
                    },
                )
            except Exception as exc:  # a job boundary: its manifest failed, not its bundle
                report(index, exc)
                return
            report(
                index,
                {
                    "duration_s": duration,
                    "overall": result.get("overall"),
                    "timing": result.get("timing"),
                },
            )

        run_jobs(benchmark, adapter, targets, first.generation_kwargs, first.request_kwargs, done)

    def _answered(self, job_id: str, record: Mapping[str, Any]) -> None:
        self.notify("answered", {"job_id": job_id})

    def _job_info(self, job: Job, attempt: int, bundle: Bundle) -> dict[str, Any]:
        """What config.json records about the job run."""
        return {
            "job_id": job.job_id,
            "fingerprint": job.fingerprint,
            "inputs": job.inputs,  # what the fingerprint hashes: says why a later plan is stale
            "sparse_config_name": job.sparse_name,
            "sparse_config": _config_dict(job.sparse_config),
            "attempt": attempt,
            "worker": self.worker_id,
            "device": self.label,
            "bundle": bundle.job_ids,
        }

    # ----- model --------------------------------------------------------------------------
    def _adapter_for(self, job: Job) -> ModelAdapter:
        if self.adapter is not None and self.model_key == job.model_key:
            self.adapter.set_sparse_attention_config(job.sparse_config)
            return self.adapter
        self.release_model()
        t0 = time.perf_counter()
        factory: AdapterFactory = (
            _default_factory() if job.adapter.factory is None else load_factory(job.adapter.factory)
        )
        try:
            adapter = factory(
                job.model,
                job.sparse_config,
                job.adapter.model_kwargs,
                job.adapter.tokenizer_kwargs,
                self.device,
            )
        except Exception as exc:
            if category_of_exception(exc) != OTHER:
                raise  # already categorised (CUDA OOM, ModelLoadError, ...)
            raise ModelLoadError(
                f"loading model {job.model!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            check_model_device(adapter, self.device)
        except ModelLoadError:
            adapter.close()  # it is nobody's model now: give its memory back before the retry
            raise
        self.adapter, self.model_key = adapter, job.model_key
        self.notify("model_loaded", {"model": job.model, "seconds": time.perf_counter() - t0})
        return adapter

    def release_model(self) -> None:
        """Close the adapter and give its memory back before another model is loaded."""
        if self.adapter is None:
            return
        try:
            self.adapter.close()
        finally:
            self.adapter, self.model_key = None, None
            self._benchmarks = {
                k: b for k, b in self._benchmarks.items() if not k.startswith("model:")
            }
            gc.collect()
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()

    # ----- data ---------------------------------------------------------------------------
    def _benchmark_for(self, job: Job, adapter: ModelAdapter) -> Benchmark:
        """One benchmark instance per subset (per model if sized by it), reused across jobs.

        `Benchmark.load_samples` keeps the rows it read, so reusing the instance is what makes
        a subset load once per worker instead of once per job.
        """
        key = canonical_json([job.benchmark, job.subset, job.data_path, job.options])
        if get_benchmark_class(job.benchmark).sized_by_model:
            key = f"model:{self.model_key}:{key}"
        cached = self._benchmarks.get(key)
        if cached is not None:
            return cached
        t0 = time.perf_counter()
        benchmark = create_benchmark_instance(
            job.benchmark, [job.subset], job.data_path, **job.options
        )
        benchmark.bind_adapter(adapter)
        benchmark.load_samples()  # read now (timed for the record); the instance keeps the rows
        self._benchmarks[key] = benchmark
        self.notify(
            "dataset_loaded",
            {"benchmark": job.benchmark, "subset": job.subset, "seconds": time.perf_counter() - t0},
        )
        return benchmark


def _default_factory() -> AdapterFactory:
    """`ModelAdapterHF` (its constructor is a factory), imported only when a worker needs it."""
    from sparse_attention_hub.adapters.hf import ModelAdapterHF

    return ModelAdapterHF


def check_model_device(adapter: ModelAdapter, device: str) -> None:
    """Every weight of the adapter's model must live on this worker's device."""
    if adapter.model is None:
        return
    import torch

    want = torch.device(device)
    stray = {
        str(p.device)
        for p in adapter.model.parameters()
        if p.device.type != want.type or (want.index is not None and p.device.index != want.index)
    }
    if stray:
        raise ModelLoadError(f"model weights on {sorted(stray)}, expected all on {device}")


def _config_dict(config: ResearchAttentionConfig | None) -> dict[str, Any] | None:
    if config is None:
        return None
    from sparse_attention_hub.sparse_attention import config_to_dict

    return config_to_dict(config)
