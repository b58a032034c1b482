"""Rows -> requests: one request per (subset, context, answer_prefix, max_new_tokens)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sparse_attention_hub.adapters.request_kwargs import check_request_kwargs


@dataclass(frozen=True)
class RequestGroup:
    """Questions that share a context, an answer prefix and a token cap, in row order."""

    subset: str
    context: str
    answer_prefix: str
    max_new_tokens: int
    row_indices: tuple[int, ...]


def group_requests(samples: pd.DataFrame) -> list[RequestGroup]:
    """Groups in order of first appearance; a group never mixes subsets, prefixes or caps."""
    order: dict[tuple[str, str, str, int], list[int]] = {}
    subsets = samples["subset"] if "subset" in samples.columns else samples["task"]
    for index, subset, context, prefix, cap in zip(
        samples.index,
        subsets,
        samples["context"],
        samples["answer_prefix"],
        samples["max_new_tokens"],
        strict=True,
    ):
        order.setdefault((str(subset), str(context), str(prefix), int(cap)), []).append(int(index))
    return [RequestGroup(s, c, p, m, tuple(rows)) for (s, c, p, m), rows in order.items()]


def limit_groups(groups: list[RequestGroup], max_requests: int | None) -> list[RequestGroup]:
    """Per subset, whole groups in order while the question total stays <= max_requests.

    At least one group per subset is kept, so a small limit never yields an empty run.
    """
    if max_requests is None:
        return groups
    check_request_kwargs({"max_requests": max_requests})
    taken: dict[str, int] = {}
    kept = []
    for group in groups:
        used = taken.get(group.subset)
        size = len(group.row_indices)
        if used is None or used + size <= max_requests:
            kept.append(group)
            taken[group.subset] = (used or 0) + size
        else:
            taken[group.subset] = max_requests + 1  # stop this subset: groups stay in order
    return kept
