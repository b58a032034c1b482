"""Mask algebra shared by the maskers (docs/methods.md §4): union, candidates, exact top-k, uniform
sampling.

Masks are float32 `(batch, heads, q_len, k_len)` in [0, 1]: 0 = not selected, p in (0, 1] =
selected with inclusion probability p, 1 = deterministic. Selections are bool tensors of the
same shape. Ties always go to the lower key index.
"""

from __future__ import annotations

import torch


def union(previous: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """`clamp(previous + new, 0, 1)` as a new float32 tensor; `previous` is never modified."""
    return (previous + new.to(torch.float32)).clamp_(0.0, 1.0)


def candidates(allowed: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Allowed entries not selected yet (`previous == 0`), bool."""
    return allowed & (previous == 0)


def topk_select(scores: torch.Tensor, eligible: torch.Tensor, k: int) -> torch.Tensor:
    """The `k` highest-scoring eligible entries of every row (all of them if fewer), bool.

    Exact tie rule: every entry above the k-th value, then the lowest-index entries equal to it.
    """
    n_keys = scores.shape[-1]
    if k <= 0:
        return torch.zeros_like(eligible)
    if k >= n_keys:
        return eligible.clone()
    masked = scores.masked_fill(~eligible, float("-inf"))
    kth = torch.topk(masked, k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    above = (masked > kth) & eligible
    tied = (masked == kth) & eligible
    missing = k - above.sum(dim=-1, keepdim=True)
    return above | (tied & (tied.cumsum(dim=-1) <= missing))


def sample_select(
    eligible: torch.Tensor, counts: torch.Tensor, noise: torch.Tensor, limit: int | None = None
) -> torch.Tensor:
    """`counts[row]` distinct eligible entries per row, uniformly without replacement, bool.

    `counts` has the row shape (`eligible.shape[:-1]`) and must not exceed the eligible count;
    `noise` holds i.i.d. uniform keys of `eligible`'s shape (float64): the eligible entries with
    the smallest keys form a uniform random subset of the requested size. `limit` is a bound on
    `counts` known without reading it (None: the row length), so nothing is read back to the host.
    """
    n_keys = eligible.shape[-1]
    limit = n_keys if limit is None else min(limit, n_keys)
    if limit <= 0:
        return torch.zeros_like(eligible)
    noise = noise.masked_fill(~eligible, 2.0)
    order = noise.topk(limit, dim=-1, largest=False, sorted=True).indices
    take = torch.arange(limit, device=order.device) < counts.unsqueeze(-1)
    return torch.zeros_like(eligible).scatter_(-1, order, take) & eligible
