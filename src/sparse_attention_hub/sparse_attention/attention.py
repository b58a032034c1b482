"""Masked attention math: the self-normalised importance-weighted softmax of docs/methods.md §5.

Shapes: queries (B, H, Q, D); keys/values (B, H_kv, N, D); masks (B, H, Q, N).
All arithmetic is float32 whatever the model dtype; the output is cast back at the end.
`weighted_attention` works over whole rows; `gathered_attention` computes the same sum over at most
K keys per row gathered by index, for masks known to keep few keys (same result up to the order
of float32 additions).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sparse_attention_hub.sparse_attention.bools import (
    any_last,
    as_bytes,
    flat_positions,
    neg_inf_unless,
    to_float,
)
from sparse_attention_hub.sparse_attention.call import DEFAULT_MEMORY_MIB

DENSE_ENTRY_BYTES = 24
"""Working memory of dense attention per (batch, head, query, key) entry (logits, weights)."""


def allowed_entries(
    attention_mask: torch.Tensor | None,
    q_len: int,
    k_len: int,
    device: torch.device,
    first_position: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Which (i, j) the model allows, and its additive bias (None when there is none).

    `attention_mask` is what transformers hands an attention function: None (plain causal, query
    row i at absolute position `first_position` + i, default N - Q + i), a bool mask (True =
    attend) or an additive float mask (0 / very negative). Returned shapes broadcast to
    (B, H, Q, N).
    """
    if attention_mask is None:
        first = k_len - q_len if first_position is None else first_position
        rows = torch.arange(q_len, device=device)[:, None] + first
        cols = torch.arange(k_len, device=device)[None, :]
        return (cols <= rows)[None, None], None
    mask = attention_mask[..., -k_len:]
    if mask.dtype == torch.bool:
        return mask, None
    bias = mask.float()
    allowed = bias > torch.finfo(mask.dtype).min / 2
    return allowed, torch.where(allowed, bias, torch.zeros_like(bias))


def grouped_matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-query-head `x` (B, H, Q, A) times per-KV-head `y` (B, H_kv, A, C) -> (B, H, Q, C).

    Query head h uses KV head h // g: the g query heads of a KV head are stacked as rows, so K and
    V are never repeated in memory.
    """
    batch, heads, rows, inner = x.shape
    kv_heads = y.shape[1]
    out = torch.matmul(x.reshape(batch, kv_heads, (heads // kv_heads) * rows, inner), y)
    return out.view(batch, heads, rows, y.shape[-1])


def attention_logits(
    queries: torch.Tensor,
    keys: torch.Tensor,
    scaling: float,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """scale * q.k (+ bias) in float32 with GQA (query head h reads KV head h // g): (B, H, Q, N).

    Computed as q K^T, the g query heads of a KV head stacked as rows: the result is already in
    (B, H, Q, N) order, and BLAS reads K^T as a transposed view. On our CPU this took 240 us
    against 390 us for K q^T plus the transposing copy at 4k-key decode (SmolLM2 shapes), 2.9
    against 4.2 ms at Q = 32; the two agree to float32 rounding.
    """
    batch, heads, rows, dim = queries.shape
    kv_heads, n_keys = keys.shape[1], keys.shape[2]
    stacked = queries.float().reshape(batch, kv_heads, (heads // kv_heads) * rows, dim)
    logits = torch.matmul(stacked, keys.float().transpose(-1, -2))
    if scaling != 1.0:  # q . k itself (a masker's scores): x * 1 = x
        logits.mul_(scaling)
    logits = logits.view(batch, heads, rows, n_keys)
    return logits if bias is None else logits + bias


def weighted_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    allowed: torch.Tensor,
    scaling: float,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    logits: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    unit_mask: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output (B, Q, H, D) under `mask` (values p in [0, 1], p > 0 = selected).

    w_ij = exp(s_ij - m_i) / p_ij over selected allowed keys; O_i = sum w v / sum w. A row with no
    selected allowed key (but some allowed key) is computed densely. `mask=None` is dense
    attention. `logits` (B, H, Q, N) may be passed when the caller already has scale * q.k + bias.
    `unit_mask`: every selected value is 1 (no sampling masker), so the division by p is skipped
    (dividing by 1 changes nothing). The output has `out_dtype` (default: the queries' dtype).
    Also returns the per-row dense-fallback flags, (B, H, Q).
    """
    if logits is None:
        logits = attention_logits(queries, keys, scaling, bias)
    weights, fallback = softmax_weights(logits, allowed, mask, unit_mask)
    output = grouped_matmul(weights, values.float())
    dtype = queries.dtype if out_dtype is None else out_dtype
    return output.transpose(1, 2).contiguous().to(dtype), fallback


def softmax_weights(
    logits: torch.Tensor, allowed: torch.Tensor, mask: torch.Tensor | None, unit_mask: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised weights w_ij / sum_j w_ij of `weighted_attention`, float32 (B, H, Q, N)
    (in place of `logits`' copy), and the per-row dense-fallback flags (B, H, Q)."""
    allowed = allowed.expand_as(logits)
    probs = None
    if mask is None:
        selected = allowed
        fallback = torch.zeros(logits.shape[:-1], dtype=torch.bool, device=logits.device)
    else:
        selected = allowed & mask.bool()  # mask >= 0: selected where nonzero
        fallback = ~any_last(selected) & any_last(allowed)
        selected = selected | (fallback[..., None] & allowed)  # selected is empty there
        if not unit_mask:  # p in (0, 1]: max(p, 1) = 1 on fallback rows, max(p, 0) = p
            probs = torch.maximum(mask.float().clamp_min(1e-30), to_float(fallback[..., None]))
    masked = neg_inf_unless(logits, selected)
    row_max = masked.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    weights = exp_selected(masked.sub_(row_max), selected)
    if probs is not None:
        weights = weights.div_(probs)  # 0 / p stays 0 on unselected keys
    denominator = weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return weights.div_(denominator), fallback


EXP_FLOOR = -87.0
"""exp() of a float32 below about -87.3 underflows (denormal or 0), and CPU exp kernels take a
scalar path 5-25x slower for such inputs and for -inf (docs/methods.md §5.2)."""


def exp_selected(shifted: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """exp(shifted) on selected entries, 0 elsewhere, in place of `shifted` (max <= 0 per row).

    Inputs are raised to `EXP_FLOOR` first so no entry takes the slow underflow path; a selected
    entry below it gets exp(-87) ~ 1.6e-38 instead of a smaller denormal or 0, far below float32
    rounding of a row sum that is at least 1 (the row's maximum contributes exp(0)).
    """
    return shifted.clamp_min_(EXP_FLOOR).exp_().mul_(to_float(selected))


def dense_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    memory_mib: int = DEFAULT_MEMORY_MIB,
) -> torch.Tensor:
    """Exact softmax attention over the allowed keys, (B, Q, H, D), through the same math.

    Queries go in chunks whose (B, H, rows, N) float32 work (about 6 such tensors) fits
    `memory_mib`, so a long question over a long context never builds a (B, H, Q, N) tensor.
    """
    batch, heads, q_len, _ = queries.shape
    k_len = keys.shape[2]
    rows = max(1, (memory_mib << 20) // max(1, batch * heads * k_len * DENSE_ENTRY_BYTES))
    outputs = []
    for start in range(0, q_len, rows):
        stop = min(start + rows, q_len)
        mask = attention_mask
        if mask is not None and mask.shape[-2] == q_len:
            mask = mask[..., start:stop, :]
        allowed, bias = allowed_entries(
            mask, stop - start, k_len, queries.device, k_len - q_len + start
        )
        output, _ = weighted_attention(
            queries[:, :, start:stop], keys, values, allowed, scaling, None, bias
        )
        outputs.append(output)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)


def gathered_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    selected: torch.Tensor,
    mask: torch.Tensor,
    scaling: float,
    bias: torch.Tensor | None,
    limit: int,
    scores: torch.Tensor | None = None,
    unit_mask: bool = False,
) -> torch.Tensor:
    """`weighted_attention` over the selected keys only, float32 `(B, H, Q, D)`.

    `selected` (B, H, Q, N) bool must have at most `limit` True entries per row and at least one
    in every row that has an allowed key (no dense fallback here). The work is O(limit), not O(N).
    `scores` (B, H, Q, N), the unscaled q . k a masker already computed over whole rows, saves
    gathering the keys: the logits are read from it.
    `unit_mask` as in `weighted_attention`. On CPU with float32 values the selected entries are
    found in the selection's memory and each row's weighted sum of V rows is one bag of
    `embedding_bag` (`_ragged`); elsewhere every row is padded to `limit` keys (`_padded`).
    Both equal the whole-row path up to the order of float32 additions (docs/methods.md §5.1).
    """
    if ragged_layout(values):
        return _ragged(queries, keys, values, selected, mask, scaling, bias, scores, unit_mask)
    return _padded(queries, keys, values, selected, mask, scaling, bias, limit, scores, unit_mask)


def ragged_layout(values: torch.Tensor) -> bool:
    """Whether `gathered_attention` runs row by row over the selected entries, reading V rows
    where they lie (CPU, float32 values), rather than padding rows and copying V rows."""
    return values.device.type == "cpu" and values.dtype == torch.float32


def _padded(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    selected: torch.Tensor,
    mask: torch.Tensor,
    scaling: float,
    bias: torch.Tensor | None,
    limit: int,
    scores: torch.Tensor | None,
    unit_mask: bool,
) -> torch.Tensor:
    """`gathered_attention` with each row's selected keys as the `limit` largest entries of
    `selected` (a top-k: no size is read back to the host); their K and V rows are copied out."""
    batch, heads, q_len, dim = queries.shape
    kv_heads = keys.shape[1]
    index = as_bytes(selected).topk(limit, dim=-1, sorted=False).indices  # (B, H, Q, K)
    valid = selected.gather(-1, index)
    shape = (batch, heads, q_len, limit, dim)

    def picked(x: torch.Tensor) -> torch.Tensor:  # (B, H, Q, K, D) float32 rows of K or V
        # query head h reads KV head h // g, so K and V are never repeated; index_select copies
        # whole rows (far faster than an expanded gather)
        table, offsets = row_table(x)
        rows = (index.reshape(batch * kv_heads, -1) + offsets[:, None]).reshape(-1)
        return table.index_select(0, rows).view(shape).float()

    picked_values = picked(values)
    if scores is None:
        picked_keys = picked(keys)
        # einsum, not matmul: a batched matrix-vector product is several times slower as bmm
        logits = torch.einsum("bhqkd,bhqd->bhqk", picked_keys, queries.float()) * scaling
    else:
        logits = scores.gather(-1, index) * scaling
    if bias is not None:
        logits = logits + bias.expand(batch, heads, q_len, -1).gather(-1, index)
    logits = logits.masked_fill_(~valid, float("-inf"))
    row_max = logits.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    weights = logits.sub_(row_max).exp_()  # 0 where not valid (exp(-inf))
    if not unit_mask:
        weights = weights.div_(mask.gather(-1, index).clamp_min_(1e-30))
    denominator = weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return (weights.div_(denominator).unsqueeze(-2) @ picked_values).squeeze(-2)


def _ragged(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    selected: torch.Tensor,
    mask: torch.Tensor,
    scaling: float,
    bias: torch.Tensor | None,
    scores: torch.Tensor | None,
    unit_mask: bool,
) -> torch.Tensor:
    """`gathered_attention` on CPU over exactly the selected entries, row after row.

    `bools.flat_positions` finds them in the selection's memory (no host round trip on CPU), the
    softmax runs over each row's segment, and `embedding_bag` sums the weighted V rows per row
    without copying them out: at a 4k-key decode step with ~18% of the keys kept, 30 against
    110 us warm and 160 against 530 us with V out of cache, where a copy of the rows stalls on
    every one (docs/methods.md §5.2).
    """
    batch, heads, q_len, dim = queries.shape
    kv_heads, n_keys = keys.shape[1], keys.shape[2]
    shape = (batch, heads, q_len, n_keys)
    # index arithmetic in numpy: the same integers, at a fraction of torch's cost per small op
    flat = flat_positions(selected, shape)  # (T,) flat (b, h, q, key) of each entry, row order
    rows = np.arange(batch * heads * q_len)
    row_of = flat // n_keys  # (b, h, q) row of each entry
    counts = torch.from_numpy(np.bincount(row_of, minlength=rows.size))
    # table row of each entry: the first row of its (batch, KV head) plus its key
    table_v, offsets = row_table(values)
    head = rows // q_len  # b * H + h
    kv = head // heads * kv_heads + head % heads // (heads // kv_heads)
    # key = flat - row * N, so table row = flat + (offset of its KV head - row * N)
    kv_row = torch.from_numpy(flat + (offsets.numpy()[kv] - rows * n_keys)[row_of])
    position, row = torch.from_numpy(flat), torch.from_numpy(row_of)
    if scores is None:
        table_k, _ = row_table(keys)
        picked_keys = table_k.index_select(0, kv_row).float()
        picked_queries = queries.float().reshape(-1, dim).index_select(0, row)
        logits = picked_keys.mul_(picked_queries).sum(dim=-1).mul_(scaling)
        del picked_keys, picked_queries
    else:
        logits = scores.take(position).mul_(scaling)
    if bias is not None:
        logits += bias.expand(shape).take(position)
    row_max = torch.segment_reduce(logits, "max", lengths=counts)  # -inf on empty rows only
    weights = logits.sub_(row_max.repeat_interleave(counts, output_size=logits.numel())).exp_()
    if not unit_mask:
        weights = weights.div_(mask.expand(shape).take(position).clamp_min_(1e-30))
    denominator = torch.segment_reduce(weights, "sum", lengths=counts)
    starts = counts.cumsum(0).sub_(counts)
    output = F.embedding_bag(kv_row, table_v, starts, mode="sum", per_sample_weights=weights)
    output = output.div_(denominator.clamp_min_(torch.finfo(torch.float32).tiny).unsqueeze(-1))
    return output.view(batch, heads, q_len, dim)


def row_table(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`x` (B, H_kv, N, D) as a (rows, D) view and the row of each (batch, head)'s key 0,
    `(B * H_kv,)`: key n of head (b, h) is row offsets[b * H_kv + h] + n.

    A KV cache that appends in place hands out views of a longer buffer (heads a capacity apart,
    adapters/context_cache.py); their rows are addressed where they lie instead of copied out.
    """
    batch, heads, n_keys, dim = x.shape
    strides = x.stride()
    if strides[-1] != 1 or strides[-2] != dim or strides[0] % dim or strides[1] % dim:
        x = x.contiguous()
        strides = x.stride()
    starts = [
        b * (strides[0] // dim) + h * (strides[1] // dim)
        for b in range(batch)
        for h in range(heads)
    ]
    offsets = torch.tensor(starts, dtype=torch.long, device=x.device)
    table = x.as_strided((max(starts, default=0) + n_keys, dim), (dim, 1))
    return table, offsets
