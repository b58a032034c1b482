"""Several jobs of one benchmark on one loaded model, one context prefill per request.

Jobs that differ only in their sparse config ask the same requests (DESIGN.md, Bundles). The
walk is requests outer, configs inner: a request's context is prefilled once
(`ModelAdapter.shared_context`, dense), then each config answers its own pending questions from
the cache cropped back to the context, with its own statistics recorder, and every answer is
appended to that job's `predictions.jsonl` as it comes. Each job keeps its own dir, resumes from
its own predictions, and is scored on its own once the walk ends. A config that raises ends its
own job there (its answers so far stay, to resume from); the other jobs go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sparse_attention_hub.adapters.base import ModelAdapter, Request
from sparse_attention_hub.benchmark.grouping import RequestGroup
from sparse_attention_hub.benchmark.results_io import PredictionKey
from sparse_attention_hub.result_files import PREDICTIONS

if TYPE_CHECKING:
    from sparse_attention_hub.benchmark.base import Benchmark
    from sparse_attention_hub.sparse_attention import ResearchAttentionConfig

logger = logging.getLogger(__name__)

# Keys of a job's `timing` (metrics.json): sums over its saved answers. A context prefilled once
# for n jobs counts 1/n context and 1/n of its seconds in each, so totals over jobs add up.
TIMING_KEYS = (
    "context_prefill_s",
    "contexts_prefilled",
    "question_prefill_s",
    "decode_s",
    "tokens_generated",
)

JobDone = Callable[[int, "dict[str, Any] | BaseException"], None]
"""`on_done(target_index, metrics or the exception that ended the job)`: once per target."""


@dataclass(frozen=True)
class JobTarget:
    """One job of a bundle: where its results go, its sparse config, what config.json records.

    `sparse_config` is switched to before the job's every step when a bundle has several
    targets; a single target runs with the adapter's active config. `on_saved(record)` is
    called after each of the job's predictions is durably appended (the Ray backend sends the
    job's new lines to the driver from there).
    """

    result_dir: Path
    sparse_config: ResearchAttentionConfig | None = None
    job_info: Mapping[str, Any] | None = None
    on_saved: Callable[[Mapping[str, Any]], None] | None = None


@dataclass(frozen=True)
class Plan:
    """What every job of a bundle shares: the samples, their keys, the requests to run."""

    samples: pd.DataFrame
    keys: pd.Series  # (subset, sample_id) per row
    groups: list[RequestGroup]
    selected: pd.DataFrame  # the rows those groups hold


@dataclass
class _Open:
    """A job of the walk still running: its predictions so far and its statistics handle."""

    index: int
    target: JobTarget
    done: dict[PredictionKey, dict[str, Any]]
    statistics: Any
    predictions: Path = field(init=False)

    def __post_init__(self) -> None:
        self.predictions = self.target.result_dir / PREDICTIONS


def run_jobs(
    benchmark: Benchmark,
    adapter: ModelAdapter,
    targets: Sequence[JobTarget],
    generation_kwargs: Mapping[str, Any],
    request_kwargs: Mapping[str, Any],
    on_done: JobDone,
) -> None:
    """Run every target to its metrics, reporting each through `on_done` as it ends.

    An error before any job starts (bad request kwargs, the data failing to load) or in a
    context prefill concerns every job: it is raised. An error of one config ends its job only.
    """
    generation_kwargs, request_kwargs = dict(generation_kwargs), dict(request_kwargs)
    switch = len(targets) > 1
    plan = benchmark.prepare_requests(adapter, request_kwargs)
    jobs: list[_Open] = []
    for index, target in enumerate(targets):
        try:
            if switch:
                adapter.set_sparse_attention_config(target.sparse_config)
            done, statistics = benchmark.open_job(
                adapter,
                target.result_dir,
                plan,
                generation_kwargs,
                request_kwargs,
                target.job_info,
            )
        except Exception as exc:  # a job boundary: this job ends, its bundle goes on
            on_done(index, exc)
            continue
        jobs.append(_Open(index, target, done, statistics))

    for group in plan.groups:
        waiting = [job for job in jobs if _pending(plan, group, job.done)]
        if not waiting:
            continue
        context = Request(group.context, [], group.answer_prefix)
        with adapter.shared_context(context, request_kwargs) as shared:
            share = _context_share(shared, len(waiting))
            for job in waiting:
                try:
                    if switch:
                        adapter.set_sparse_attention_config(job.target.sparse_config)
                    adapter.use_statistics(job.statistics)
                    benchmark.run_group(
                        adapter,
                        plan.samples.loc[_pending(plan, group, job.done)],
                        group,
                        generation_kwargs,
                        request_kwargs,
                        partial(_save, benchmark, job),
                        share,
                    )
                except Exception as exc:  # a job boundary: only this config's job ends
                    logger.error("%s: %s", job.target.result_dir, exc)
                    jobs.remove(job)
                    on_done(job.index, exc)

    for job in jobs:
        try:
            if switch:
                adapter.set_sparse_attention_config(job.target.sparse_config)
            adapter.use_statistics(job.statistics)
            metrics = benchmark.finish_job(adapter, job.target.result_dir, plan, job.done)
        except Exception as exc:  # a job boundary: a job that cannot be scored ends alone
            on_done(job.index, exc)
            continue
        on_done(job.index, metrics)


def _save(benchmark: Benchmark, job: _Open, record: dict[str, Any]) -> None:
    benchmark.save_prediction(job.predictions, job.done, record)
    if job.target.on_saved is not None:
        job.target.on_saved(record)


def _pending(plan: Plan, group: RequestGroup, done: Mapping[PredictionKey, Any]) -> list[int]:
    return [i for i in group.row_indices if plan.keys[i] not in done]


def _context_share(shared: Mapping[str, Any] | None, jobs: int) -> dict[str, float] | None:
    if shared is None:
        return None
    return {
        "context_prefill_s": float(shared["context_prefill_s"]) / jobs,
        "contexts_prefilled": 1.0 / jobs,
    }


def timing_totals(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Each `TIMING_KEYS` entry summed over the saved answers' `timing` (0 where absent)."""
    totals = dict.fromkeys(TIMING_KEYS, 0.0)
    for record in records:
        for key, value in (record.get("timing") or {}).items():
            if key in totals:
                totals[key] += float(value)
    totals["tokens_generated"] = int(totals["tokens_generated"])
    return totals
