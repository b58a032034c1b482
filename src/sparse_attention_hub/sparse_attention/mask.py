"""Mask algebra shared by the maskers (docs/methods.md §4): union, candidates, exact top-k, uniform
sampling.

Masks are float32 `(B, H, Q, N)` in [0, 1]: 0 = not selected, p in (0, 1] =
selected with inclusion probability p, 1 = deterministic. Selections are bool tensors of the
same shape. Ties always go to the lower key index.
"""

from __future__ import annotations

import numpy as np
import torch

from sparse_attention_hub.sparse_attention.bools import (
    as_bytes,
    at_least,
    at_most,
    count_last,
    cumcount_last,
    neg_inf_unless,
    to_float,
    unset,
)


def union(previous: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """`clamp(previous + new, 0, 1)` as a new float32 tensor; `previous` is never modified."""
    if new.dtype == torch.bool:
        new = to_float(new)
    return (previous + new.to(torch.float32)).clamp_(0.0, 1.0)


def candidates(allowed: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Allowed entries not selected yet (`previous == 0`), bool."""
    return allowed & unset(previous)


def topk_select(
    scores: torch.Tensor, eligible: torch.Tensor, k: int, levels: int | None = None
) -> torch.Tensor:
    """The `k` highest-scoring eligible entries of every row (all of them if fewer), bool.

    Exact tie rule: every entry above the k-th value, then the lowest-index entries equal to it.
    `levels`: the scores are integers in [-levels, levels] (signature agreements), so the k-th
    value is read from a histogram of their 2 * levels + 1 values instead of a top-k over N;
    same result.
    """
    n_keys = scores.shape[-1]
    if k <= 0:
        return torch.zeros_like(eligible)
    if k >= n_keys:
        return eligible.clone()
    if levels is None:
        masked = neg_inf_unless(scores, eligible)
        kth = kth_largest(masked, k)
    else:
        masked, kth = scores, _kth_of_levels(scores, eligible, k, levels)
    if scores.device.type == "cpu" and levels is None:
        # no score equal to a row's k-th but the k-th itself: the entries at or above it are the
        # answer (on CPU the counts are read in place; other devices never branch on values;
        # integer levels nearly always tie)
        chosen = at_least(masked, kth, eligible)
        if (count_last(chosen).numpy() <= k).all():
            return chosen
    above = (masked > kth) & eligible
    tied = (masked == kth) & eligible
    missing = k - count_last(above, keepdim=True, dtype=torch.int32)
    return above | (tied & (cumcount_last(tied) <= missing))


def kth_largest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest value of every row (dim -1), `(..., 1)`, for 1 <= k <= N.

    On CPU numpy's introselect (`np.partition`, run in place on a copy made by torch, so the
    memory is counted like any tensor's) finds it 6-9x faster than `torch.topk`, the largest
    single cost of a top-k masker's call (docs/methods.md §5.2); elsewhere `torch.topk`.
    """
    n_keys = values.shape[-1]
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        work = values.detach().clone(memory_format=torch.contiguous_format)
        array = work.numpy()
        array.partition(n_keys - k, axis=-1)
        return work[..., n_keys - k : n_keys - k + 1].clone()
    return torch.topk(values, k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)


def _kth_of_levels(
    scores: torch.Tensor, eligible: torch.Tensor, k: int, levels: int
) -> torch.Tensor:
    """The k-th largest eligible score per row, `(..., 1)` float32; -inf where fewer than k."""
    # bucket 0 holds the ineligible entries, bucket v + levels + 1 the eligible value v
    bucket = (scores + (levels + 1)).mul_(to_float(eligible, scores.dtype)).long()
    histogram = torch.zeros(
        (*scores.shape[:-1], 2 * levels + 2), dtype=torch.int32, device=scores.device
    )
    histogram.scatter_add_(-1, bucket, torch.ones_like(bucket, dtype=torch.int32))
    # at_least[j]: eligible entries scoring >= levels - j; the k-th value is levels - (first j
    # with at_least[j] >= k), and there is none when the row has fewer than k eligible entries
    at_least = histogram[..., 1:].flip(-1).cumsum(dim=-1, dtype=torch.int32)
    first = (at_least < k).sum(dim=-1, keepdim=True, dtype=torch.int32)
    kth = (levels - first).to(torch.float32)
    return kth.masked_fill_(first > 2 * levels, float("-inf"))


def sample_select(
    eligible: torch.Tensor, counts: torch.Tensor, noise: torch.Tensor, limit: int | None = None
) -> torch.Tensor:
    """`counts[row]` distinct eligible entries per row, uniformly without replacement, bool.

    `counts` has the row shape (`eligible.shape[:-1]`) and must not exceed the eligible count;
    `noise` holds i.i.d. uniform keys in [0, 1) of `eligible`'s shape (float64): the eligible
    entries with the `counts` smallest keys form a uniform random subset of the requested size.
    `limit` is a bound on `counts` known without reading it (None: the row length); it only
    makes the work smaller, never changes the result.

    No row is sorted (docs/methods.md §4). On CPU numpy's introselect finds each row's
    `counts`-th smallest eligible key (`_smallest_keys`); elsewhere a histogram of the keys over
    at least N equal buckets finds the bucket holding it, every entry in a lower bucket is taken
    and the bucket itself (about one entry for uniform keys) is ranked by a small top-k, and
    nothing is read back to the host (`_histogram_rows`). Both take the entries sorting all keys
    would. Rows go in blocks (along dim -2) of about `_BLOCK_ENTRIES` entries, so the passes over
    a block stay in cache.
    """
    if eligible.dim() < 2:
        return _select_rows(eligible, counts, noise, limit)
    per_query = eligible[..., :1, :].numel()  # entries of one index of dim -2 (query rows)
    step = max(1, _BLOCK_ENTRIES // max(1, per_query))
    if step >= eligible.shape[-2]:
        return _select_rows(eligible, counts, noise, limit)
    parts = [  # slices of dim -2 are views: no copy of the float64 noise
        _select_rows(
            eligible[..., a : a + step, :],
            counts[..., a : a + step],
            noise[..., a : a + step, :],
            limit,
        )
        for a in range(0, eligible.shape[-2], step)
    ]
    return torch.cat(parts, dim=-2)


def _select_rows(
    eligible: torch.Tensor, counts: torch.Tensor, noise: torch.Tensor, limit: int | None = None
) -> torch.Tensor:
    """`sample_select` on one block of rows."""
    n_keys = eligible.shape[-1]
    limit = n_keys if limit is None else min(limit, n_keys)
    if limit <= 0 or n_keys == 0:
        return torch.zeros_like(eligible)
    if noise.device.type == "cpu":
        return _smallest_keys(eligible, counts, noise, limit)
    return _histogram_rows(eligible, counts, noise, limit)


def _histogram_rows(
    eligible: torch.Tensor, counts: torch.Tensor, noise: torch.Tensor, limit: int
) -> torch.Tensor:
    """`_select_rows` without host reads (GPU): bucket histogram, then the boundary bucket."""
    n_keys = eligible.shape[-1]
    buckets = 1 << max(n_keys - 1, 1).bit_length()  # a power of two >= N: exact bucket indices
    # keys in [0, 1) -> [0, buckets] (float32 rounding may reach 1.0: one more bucket);
    # rounding is monotone, so a lower bucket still holds only smaller keys, all that counts
    bucket = noise.to(torch.float32).mul_(buckets).long()
    histogram = torch.zeros(
        (*eligible.shape[:-1], buckets + 1), dtype=torch.int32, device=eligible.device
    )
    histogram.scatter_add_(-1, bucket, as_bytes(eligible).to(torch.int32))  # eligible only
    cumulative = histogram.cumsum(dim=-1, dtype=torch.int32)
    del histogram
    wanted = counts.clamp(0, limit).to(torch.int32).unsqueeze(-1)
    boundary = count_last(cumulative < wanted, keepdim=True)  # bucket of the counts-th key
    before = cumulative.gather(-1, (boundary - 1).clamp_min(0)) * (boundary > 0)
    del cumulative
    need = wanted - before  # keys to take from the boundary bucket, (..., 1)
    members = (bucket == boundary) & eligible
    chosen = (bucket < boundary) & eligible
    del bucket
    ranked = min(_BUCKET_TOP, n_keys)
    # keys are < 1: max(key, 2) = 2 moves every non-member past the members
    outside = to_float(~members, noise.dtype).mul_(2.0)
    order = torch.maximum(noise, outside).topk(ranked, dim=-1, largest=False).indices
    take = torch.arange(ranked, device=order.device) < need
    chosen |= torch.zeros_like(chosen).scatter_(-1, order, take)
    # more than `ranked` wanted members in the boundary bucket (uniform keys: never): the rest
    # by lowest index, so the count stays exact whatever the keys
    rest = members & ~chosen
    missing = (need - ranked).clamp_min(0)
    return chosen | (rest & (cumcount_last(rest) <= missing))


def _smallest_keys(
    eligible: torch.Tensor, counts: torch.Tensor, noise: torch.Tensor, limit: int
) -> torch.Tensor:
    """`_select_rows` on CPU: each row's `counts`-th smallest eligible key by numpy's introselect
    (`np.partition`, row by row, in place on a tensor made by torch so its memory is counted),
    then the eligible keys up to it: a few passes over the rows instead of the histogram's dozen,
    0.4x its time (docs/methods.md §5.2). Where a row holds keys equal to its k-th (float64
    uniform keys: all but never), the lowest indices among them are taken. Reading the ranks
    and counts here is no host round trip: a CPU tensor's numpy() shares its memory."""
    n_keys = eligible.shape[-1]
    wanted = counts.clamp(0, limit).unsqueeze(-1)
    rank = (wanted - 1).clamp_min(0)
    # keys are < 1: an ineligible entry's key becomes 2, past every eligible key (a copy, then
    # numpy's masked fill: half the time of a maximum with a float cast of the selection)
    work = noise.clone(memory_format=torch.contiguous_format)
    np.copyto(work.numpy(), 2.0, where=(~eligible).numpy())
    rows = work.view(-1, n_keys).numpy()  # shares the tensor's memory: nothing is copied
    ranks = rank.reshape(-1).numpy()
    if ranks.size and (ranks == ranks[0]).all():
        rows.partition(int(ranks[0]), axis=-1)
    else:
        for row, k in zip(rows, ranks.tolist(), strict=True):
            row.partition(k)
    kth = work.gather(-1, rank).masked_fill_(wanted == 0, -1.0)  # -1: no key is taken
    del work, rows
    chosen = at_most(noise, kth, eligible)
    if np.array_equal(count_last(chosen, keepdim=True).numpy(), wanted.numpy()):
        return chosen
    below = (noise < kth) & eligible
    tied = (noise == kth) & eligible
    missing = wanted - count_last(below, keepdim=True)
    return below | (tied & (cumcount_last(tied) <= missing))


_BLOCK_ENTRIES = 1 << 18
"""Entries per block of rows in `sample_select` (its working set, ~40 bytes an entry, stays in
the last-level cache). Smaller blocks pay a dozen op dispatches per query row: at Q = 32, N = 4k,
random_sampling took 45 ms with 2^16 and 35 ms with 2^18 (2^20: the same; N = 16k: no change)."""
_BUCKET_TOP = 16
"""Entries of the boundary bucket ranked exactly: about one is expected there (N keys over at
least N buckets), more than 16 has probability below 1e-13 for uniform keys."""
