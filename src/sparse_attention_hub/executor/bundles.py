"""Bundles: the unit a backend carries to a worker (DESIGN.md, Bundles).

Jobs that differ only in their sparse config ask the same requests, so one worker runs them
together and prefills each context once (`benchmark.bundle`). Pure functions here form the
queue: bundles by key, split while workers would idle (fewer groups than idle workers, or when
halving a group ends the run earlier, near its end), longest estimated first.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sparse_attention_hub.executor.plan import Job, canonical_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bundle:
    """Jobs run by one worker in one walk over their requests, each with its attempt number.

    A plain picklable value: backends carry it to `Worker.execute` without looking inside.
    """

    jobs: tuple[Job, ...]
    attempts: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.jobs or len(self.jobs) != len(self.attempts):
            raise ValueError("a bundle holds at least one job and one attempt number per job")

    @property
    def bundle_id(self) -> str:
        """The first job's id, `+N` when N more ride along."""
        first = self.jobs[0].job_id
        return first if len(self.jobs) == 1 else f"{first}+{len(self.jobs) - 1}"

    @property
    def job_ids(self) -> list[str]:
        return [job.job_id for job in self.jobs]


def bundle_key(job: Job) -> str:
    """Equal for jobs that may share a context prefill: everything but the sparse config."""
    return canonical_json(
        [
            job.model_key,
            job.benchmark,
            job.subset,
            job.data_path,
            job.options,
            job.generation_kwargs,
            job.request_kwargs,
        ]
    )


def estimate(job: Job) -> float:
    """Samples x context tokens of the job, as its benchmark estimates them (1.0 if unknown)."""
    from sparse_attention_hub.benchmark.registry import create_benchmark_instance

    try:
        instance = create_benchmark_instance(
            job.benchmark, [job.subset], job.data_path, **job.options
        )
        work = instance.estimated_work()
    except Exception as exc:  # an estimate only orders the queue: never a reason to fail
        logger.debug("no work estimate for %s: %s", job.job_id, exc)
        work = None
    return float(work) if work else 1.0


def form_groups(jobs: list[Job], share_prefill: bool) -> list[list[Job]]:
    """Jobs grouped by `bundle_key` in first-appearance order; singletons when not sharing."""
    if not share_prefill:
        return [[job] for job in jobs]
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(bundle_key(job), []).append(job)
    return list(groups.values())


def group_work(group: list[Job], estimates: dict[str, float]) -> float:
    """What a group costs, for ordering: the sum of its jobs' estimates."""
    return sum(estimates.get(job.job_id, 1.0) for job in group)


def split_for_workers(
    groups: list[list[Job]], workers: int, estimates: dict[str, float]
) -> list[list[Job]]:
    """Split the costliest splittable group in halves until every worker can get one."""
    groups = [list(g) for g in groups]
    while len(groups) < workers:
        splittable = [g for g in groups if len(g) > 1]
        if not splittable:
            break
        largest = max(splittable, key=lambda g: group_work(g, estimates))
        index = groups.index(largest)
        half = (len(largest) + 1) // 2
        groups[index : index + 1] = [largest[:half], largest[half:]]
    return groups


# A split costs the split-off jobs their shared context prefills, so a group is halved only when
# that ends the projected run more than this fraction earlier.
SPLIT_GAIN = 0.02


def projected_end(free_at: Iterable[float], works: Iterable[float]) -> float:
    """When greedy list scheduling ends: each work, in order, goes to the worker free first."""
    heap = sorted(free_at) or [0.0]
    for work in works:
        heapq.heappush(heap, heapq.heappop(heap) + work)
    return max(heap)


def split_if_it_pays(
    group: list[Job], rest: list[float], others: list[float], estimates: dict[str, float]
) -> list[list[Job]]:
    """`group` as the pieces a free worker should see: the first to take now, the others to
    queue. Halved while that ends the run earlier, projected with the work `rest` of the queue
    and the other workers free after `others` (all in estimated work units)."""
    first = list(group)
    pieces: list[list[Job]] = []
    while len(first) > 1:
        half = (len(first) + 1) // 2
        head, tail = first[:half], first[half:]
        whole = projected_end([group_work(first, estimates), *others], rest)
        queued = sorted([group_work(tail, estimates), *rest], reverse=True)
        if projected_end([group_work(head, estimates), *others], queued) > whole * (1 - SPLIT_GAIN):
            break
        first, pieces, rest = head, [tail, *pieces], queued
    return [first, *pieces]


def longest_first(groups: list[list[Job]], estimates: dict[str, float]) -> list[list[Job]]:
    """Costliest first (LPT); ties keep their order."""
    return sorted(groups, key=lambda g: -group_work(g, estimates))


def describe(groups: list[list[Job]]) -> list[Any]:
    """The job ids of each group, for events."""
    return [[job.job_id for job in group] for group in groups]
