"""Row reductions and fills over bool selections, through kernels that are vectorised on CPU.

On CPU, torch runs `masked_fill`, `where`, bool-to-float casts and reductions of bool tensors
(`any`, `sum`, `cumsum`) as scalar loops: over a (B, H, Q, N) selection they cost 5-80x what
float arithmetic over the same entries costs (docs/methods.md §5.2 has the measured figures),
and a sparse attention call makes a dozen such passes. The same results come from a uint8 view
of the selection (bool and uint8 share one byte per entry, values 0 / 1) and from float
`minimum` / `maximum`, which are vectorised. Every function here returns exactly what the plain
op returns; on a GPU both are fast and these cost the same.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def as_bytes(selection: torch.Tensor) -> torch.Tensor:
    """The bool `selection` as uint8 0 / 1, a view (no copy, any strides)."""
    return selection.view(torch.uint8)


def any_last(selection: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """`selection.any(dim=-1)`, bool."""
    if selection.shape[-1] == 0:  # max over nothing is undefined; any() of nothing is False
        shape = (*selection.shape[:-1], 1) if keepdim else selection.shape[:-1]
        return torch.zeros(shape, dtype=torch.bool, device=selection.device)
    return as_bytes(selection).amax(dim=-1, keepdim=keepdim).bool()


def count_last(
    selection: torch.Tensor, keepdim: bool = False, dtype: torch.dtype = torch.int64
) -> torch.Tensor:
    """`selection.sum(dim=-1)` (True entries per row) in `dtype`.

    The sum runs in int32 (rows are shorter than 2**31), 3x faster than in int64 on CPU; only the
    per-row counts are cast."""
    counts = as_bytes(selection).sum(dim=-1, keepdim=keepdim, dtype=torch.int32)
    return counts if dtype == torch.int32 else counts.to(dtype)


def cumcount_last(selection: torch.Tensor) -> torch.Tensor:
    """`selection.cumsum(dim=-1)` as int32 (rows are shorter than 2**31)."""
    return as_bytes(selection).cumsum(dim=-1, dtype=torch.int32)


def to_float(selection: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`selection.to(dtype)`: 1.0 where True, 0.0 elsewhere."""
    return as_bytes(selection).to(dtype)


def at_most(values: torch.Tensor, bound: torch.Tensor, within: torch.Tensor) -> torch.Tensor:
    """`(values <= bound) & within`, bool (all three broadcast)."""
    return _compare_within(np.less_equal, torch.le, values, bound, within)


def at_least(values: torch.Tensor, bound: torch.Tensor, within: torch.Tensor) -> torch.Tensor:
    """`(values >= bound) & within`, bool (all three broadcast)."""
    return _compare_within(np.greater_equal, torch.ge, values, bound, within)


def _compare_within(
    numpy_op: np.ufunc,
    torch_op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    values: torch.Tensor,
    bound: torch.Tensor,
    within: torch.Tensor,
) -> torch.Tensor:
    """On CPU torch's comparisons that return bool are scalar loops; numpy's are vectorised
    (0.38 against 0.77 ms over 1M float64 keys, docs/methods.md §5.2). numpy writes into a
    tensor torch makes, so its memory is counted, and reads the inputs in place."""
    if values.device.type != "cpu":
        return torch_op(values, bound) & within
    # numpy's broadcast_shapes: 2 µs against torch's 11 (per call, at every decode step)
    result = torch.empty(
        np.broadcast_shapes(values.shape, bound.shape, within.shape), dtype=torch.bool
    )
    out = result.numpy()
    numpy_op(values.detach().numpy(), bound.detach().numpy(), out=out)
    out &= within.numpy()
    return result


def neg_inf_unless(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`values.masked_fill(~keep, -inf)` as a new tensor (`keep` broadcasts to `values`).

    min(v, +inf) = v and min(v, -inf) = -inf, so the bound +inf / -inf built from `keep` by
    arithmetic (2 * keep - 1) * inf does what the fill does (NaN stays NaN where kept).
    """
    bound = to_float(keep, values.dtype).mul_(2.0).sub_(1.0).mul_(float("inf"))
    return torch.minimum(values, bound)


def set_where(mask: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """`mask.masked_fill(selection, 1.0)` for a float mask with values in [0, 1], new tensor.

    max(m, 1) = 1 on the selection and max(m, 0) = m elsewhere. Where the selection has the
    result's shape, the maximum is taken in place into its float cast (0.21 ms over (1, 9, 32,
    4096); 0.29 ms from the uint8 view by type promotion, which a smaller selection takes).
    """
    if selection.shape == np.broadcast_shapes(mask.shape, selection.shape):
        result = to_float(selection, mask.dtype)
        return torch.maximum(result, mask, out=result)
    return torch.maximum(mask, as_bytes(selection))


def unset(mask: torch.Tensor) -> torch.Tensor:
    """`mask == 0`, bool: the cast to bool (m != 0) is vectorised, the comparison is not."""
    return mask.to(torch.bool, copy=True).logical_not_()


def flat_positions(selection: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> np.ndarray:
    """Flat indices (ascending, so row by row) of the True entries of the CPU bool `selection`
    broadcast to `shape`, int64. numpy reads them in the selection's memory: no host round trip
    (numpy's `flatnonzero` over bool takes its fast path; over a uint8 view it is 6x slower)."""
    return np.flatnonzero(selection.expand(shape).contiguous().numpy().reshape(-1))


def on_selected(
    values: torch.Tensor,
    selected: torch.Tensor,
    function: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """`function(values) * selected`, for an elementwise `function` with finite results.

    On CPU `function` runs on the selected entries only, gathered by index (numpy finds them in
    the selection's memory: no host round trip), and the rest stay 0: a costly function over a
    sparse selection (MagicPIG's float64 collision probabilities) then costs what the selection
    holds. Elsewhere it runs on every entry and is multiplied by the selection.
    """
    if values.device.type != "cpu":
        result = function(values)
        return result.mul_(to_float(selected, result.dtype))
    index = torch.from_numpy(flat_positions(selected, values.shape))
    picked = function(values.reshape(-1).index_select(0, index))
    result = torch.zeros(values.shape, dtype=picked.dtype)
    return result.view(-1).index_copy_(0, index, picked).view(values.shape)
