"""The sparse attention function an adapter calls for every attention layer call in sparse mode.

It cuts the call's queries into chunks whose working memory fits `memory_mib` (results do not
depend on the chunking), builds each chunk's mask by applying the config's maskers in order (each
returns the union with the mask so far), computes the importance-weighted softmax
(docs/methods.md §5) in float32,
and records statistics as device tensors (nothing is read back to the host here). When every
masker names the key columns it may select (sink, local), the softmax runs over those columns
only (`_spanned`); otherwise, when every masker bounds the keys it adds and the bound is small,
over the selected keys only, gathered by index (`gathered_attention`), where that costs less than
whole rows; on CPU also wherever the mask turned out to keep at most a quarter of the entries
(chunks, budget and paths: docs/methods.md §5.1). Layers in `dense_layers`, an empty
masker list and `config=None` use the same math with the full mask.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch

from sparse_attention_hub.sparse_attention.attention import (
    attention_logits,
    gathered_attention,
    grouped_matmul,
    ragged_layout,
    softmax_weights,
    weighted_attention,
)
from sparse_attention_hub.sparse_attention.bools import count_last
from sparse_attention_hub.sparse_attention.call import CHUNK_SHARE, DEFAULT_MEMORY_MIB, CallScope
from sparse_attention_hub.sparse_attention.config import ResearchAttentionConfig
from sparse_attention_hub.sparse_attention.maskers.base import MaskInputs
from sparse_attention_hub.sparse_attention.state import SparseState
from sparse_attention_hub.sparse_attention.stats import AttentionStats

SPAN_FRACTION = 0.5
"""The spanned path runs when the key columns the maskers may select (`key_columns`: sink, local)
cover at most this share of N: the softmax then runs over those columns only (docs/methods.md
§5.1)."""
GATHER_FRACTION = 0.25
"""The gathered path runs when the maskers' bound on keys per row is at most this share of N."""
GATHERED_KV_ROWS_PER_KEY = 4.0
"""... and when the K and V rows it gathers per KV head (g * Q * bound) are at most this many times
N: past that, whole-row matmuls over K and V cost less than copying rows (docs/methods.md §5.1)."""
GATHERED_V_ROWS_PER_KEY = 1.0
"""The same where a masker already computed q . k over whole rows (only V rows are gathered, and
the whole-row path needs no logits matmul): gathered while g * Q * bound <= this times N."""


def build_mask(config: ResearchAttentionConfig, inputs: MaskInputs) -> torch.Tensor:
    """Apply the maskers in order from an empty float32 mask, `(B, H, Q, N)`."""
    mask = torch.zeros(inputs.allowed.shape, dtype=torch.float32, device=inputs.queries.device)
    for masker in config.masker_configs:
        mask = masker.add_mask(inputs, mask)
    return mask


def gather_limit(config: ResearchAttentionConfig, k_len: int, plain_causal: bool) -> int | None:
    """Keys per row of the gathered path, or None when the whole-row path must run: some
    masker has no bound, the bound is not small, or an empty row (dense fallback) is possible."""
    bounds = [masker.key_bound(k_len) for masker in config.masker_configs]
    if not bounds or any(bound is None for bound in bounds):
        return None
    limit = min(sum(bound for bound in bounds if bound is not None), k_len)
    if limit < 1 or limit > GATHER_FRACTION * k_len:
        return None
    if not any(m.selects_some(k_len, plain_causal) for m in config.masker_configs):
        return None
    return limit


def key_span(
    config: ResearchAttentionConfig, k_len: int, first: int, last: int
) -> list[tuple[int, int]] | None:
    """Sorted disjoint column ranges holding every key the maskers may select for query rows at
    positions first..last, or None when some masker may select anywhere or they cover too much."""
    ranges = []
    for masker in config.masker_configs:
        columns = masker.key_columns(k_len, first, last)
        if columns is None:
            return None
        if columns[1] > columns[0]:
            ranges.append(columns)
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    if not merged or sum(high - low for low, high in merged) > SPAN_FRACTION * k_len:
        return None
    return merged


def sparse_attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    *,
    layer_idx: int | None,
    config: ResearchAttentionConfig | None,
    state: SparseState,
    stats: AttentionStats | None = None,
    memory_mib: int = DEFAULT_MEMORY_MIB,
    query_chunk: int | None = None,
) -> torch.Tensor:
    """Sparse attention output `(B, Q, H, D)` in `query`'s dtype.

    query `(B, H, Q, D)`; key / value `(B, H_kv, N, D)`, not
    repeated for GQA; `attention_mask` as transformers passes it (None = causal, bool True =
    attend, or additive float). The keys are the whole KV cache: query row i sits at position
    k_len - q_len + i. `memory_mib` bounds the extra memory of the call: it sets the queries
    per chunk, unless `query_chunk` gives them (tests, benchmarks). Results do not depend on it.
    """
    if layer_idx is None:
        raise ValueError("sparse attention needs the layer index (layer_idx), got None")
    if query.dim() != 4 or key.dim() != 4 or value.shape[:3] != key.shape[:3]:
        raise ValueError(
            f"expected query (B, H, Q, D) and key/value (B, H_kv, N, D), got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    heads, q_len = query.shape[1], query.shape[2]
    kv_heads, k_len = key.shape[1], key.shape[2]
    if heads % kv_heads:
        raise ValueError(f"query heads {heads} are not a multiple of KV heads {kv_heads}")
    state.begin_call(layer_idx, k_len - q_len)
    seed = config.seed if config is not None else 0
    scope = CallScope(query, key, value, layer_idx, state, seed, memory_mib << 20)
    dense = config is None or not config.masker_configs or layer_idx in config.dense_layers
    limit = None
    if not dense and config is not None:
        limit = gather_limit(config, k_len, attention_mask is None)
    if limit is not None and (heads // kv_heads) * q_len * limit > GATHERED_KV_ROWS_PER_KEY * k_len:
        limit = None
    # gathered K and V rows, (B, H, rows, K, D) each, come on top of the mask's working set;
    # where even one query row would then exceed the budget, whole rows keep it (slower)
    gathered = 0 if limit is None else 2 * query.shape[0] * heads * limit * query.shape[-1] * 4
    if gathered and not scope.fits_one_row(gathered) and scope.fits_one_row(0):
        limit, gathered = None, 0
    # the spanned path needs rows that are never empty (no dense fallback over all keys)
    spannable = (
        not dense
        and config is not None
        and attention_mask is None
        and any(m.selects_some(k_len, True) for m in config.masker_configs)
    )
    # no sampling masker: every selected value is 1, the softmax needs no division by p
    unit = config is not None and all(m.kind == "fixed" for m in config.masker_configs)
    rows = scope.chunk_rows(gathered)
    if query_chunk is not None:
        rows = max(1, query_chunk)
    record = _CallRecord() if stats is not None else None
    outputs = []
    for start in range(0, q_len, rows):
        inputs = MaskInputs.chunk(scope, attention_mask, scaling, start, min(start + rows, q_len))
        mask = None if dense or config is None else build_mask(config, inputs)
        span = None
        if spannable and config is not None:
            first = k_len - q_len + start
            span = key_span(config, k_len, first, first + inputs.n_queries - 1)
        output = _attend(inputs, mask, limit, unit, span)
        outputs.append(output)
        if record is not None:
            record.add(inputs, mask, output, stats is not None and stats.output_error)
        del inputs, mask, output  # or this chunk's logits and mask live on beside the next's
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    if stats is not None and record is not None:
        record.write(stats, layer_idx, q_len, k_len, dense)
    return output.transpose(1, 2).contiguous().to(query.dtype)


def _attend(
    inputs: MaskInputs,
    mask: torch.Tensor | None,
    limit: int | None,
    unit: bool,
    span: list[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """One chunk's float32 output `(B, H, Q, D)`.

    Where every selected key lies in `span`, the softmax runs over those columns only. Where a
    masker already computed q . k over whole rows, only V is gathered, and only while that costs
    less than the rest of the whole-row path (docs/methods.md §5.1).
    """
    if mask is not None and span is not None:
        return _spanned(inputs, mask, span, unit)
    scores = inputs.known_scores()
    rows_gathered = inputs.groups * inputs.n_queries * (limit or 0)
    if scores is not None and rows_gathered > GATHERED_V_ROWS_PER_KEY * inputs.n_keys:
        limit = None
    selected = None
    if mask is not None and limit is None:
        observed = _observed_selection(inputs, mask, scores is not None)
        if observed is not None:
            selected, limit, scores = observed
    if mask is not None and limit is not None:
        if selected is None:
            selected = inputs.allowed & mask.bool()
        return gathered_attention(
            inputs.queries,
            inputs.scope.key,
            inputs.scope.value,
            selected,
            mask,
            inputs.scaling,
            inputs.bias,
            limit,
            scores,
            unit,
        )
    output, _ = _whole_rows(inputs, mask, unit)
    return output


def _observed_selection(
    inputs: MaskInputs, mask: torch.Tensor, scores_known: bool
) -> tuple[torch.Tensor, int, torch.Tensor | None] | None:
    """On CPU, a chunk whose mask turned out sparse takes the gathered path too: its selection,
    the most keys a row selected and the scores to read the logits from (None: K rows are
    gathered), or None for whole rows.

    With float32 values the gathered path reads V rows where they lie (`ragged_layout`), so it
    runs when the chunk's selected entries are at most `GATHER_FRACTION` of its (row, key)
    entries, whatever Q; q . k of the selected entries comes from the scores a masker computed,
    from K rows gathered per entry in a decode-sized chunk (the rows rule of K and V) where they
    fit the budget beside it, or else from one matmul over whole rows. Other dtypes copy rows
    (`_padded`): decode-sized chunks only, whose rows fit. Never where a row falls back to dense
    (docs/methods.md §5.1). The counts are read from the selection's memory (a CPU tensor's
    numpy()): no host round trip.
    """
    if inputs.queries.device.type != "cpu":
        return None
    rows_per_key = GATHERED_V_ROWS_PER_KEY if scores_known else GATHERED_KV_ROWS_PER_KEY
    decode_sized = inputs.groups * inputs.n_queries * GATHER_FRACTION <= rows_per_key
    ragged = ragged_layout(inputs.scope.value)
    if not ragged and not decode_sized:
        return None
    selected = inputs.allowed & mask.bool()
    counts = count_last(selected).numpy()
    most, total = int(counts.max(initial=0)), int(counts.sum())
    if most < 1 or (total if ragged else most * counts.size) > (
        GATHER_FRACTION * counts.size * inputs.n_keys
    ):
        return None
    if (counts == 0).any():  # a row with allowed keys but none selected falls back to dense
        allowed = np.broadcast_to(count_last(inputs.allowed).numpy(), counts.shape)
        if ((counts == 0) & (allowed > 0)).any():
            return None
    if ragged and scores_known:
        return selected, most, inputs.known_scores()
    # rows copied, float32: K rows and each entry's query row (ragged), or V (and K) rows padded
    # to the longest row (padded)
    copied = (1 if scores_known else 2) * (total if ragged else most * counts.size)
    gathered = copied * inputs.queries.shape[-1] * 4
    if decode_sized and inputs.n_queries * inputs.scope.row_bytes() + gathered <= (
        inputs.scope.memory_bytes * CHUNK_SHARE
    ):
        return selected, most, inputs.known_scores()
    return (selected, most, inputs.scores) if ragged else None


def _spanned(
    inputs: MaskInputs, mask: torch.Tensor, span: list[tuple[int, int]], unit: bool
) -> torch.Tensor:
    """The whole-row math over the key columns in `span` (plain causal: no bias). K and V are
    read range by range, never copied: the extra memory is that of (B, H, Q, span) entries."""

    def joined(parts: list[torch.Tensor]) -> torch.Tensor:  # ranges side by side on dim -1
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def columns(tensor: torch.Tensor) -> torch.Tensor:  # (..., N) -> (..., span)
        return joined([tensor[..., low:high] for low, high in span])

    scores = inputs.known_scores()
    if scores is not None:
        logits = columns(scores) * inputs.scaling
    else:
        keys = inputs.keys
        logits = joined(
            [attention_logits(inputs.queries, keys[:, :, a:b], inputs.scaling) for a, b in span]
        )
    weights, _ = softmax_weights(logits, columns(inputs.allowed), columns(mask), unit)
    ends = list(itertools.accumulate(high - low for low, high in span))
    terms = [
        grouped_matmul(weights[..., end - (high - low) : end], inputs.values[:, :, low:high])
        for (low, high), end in zip(span, ends, strict=True)
    ]
    return functools.reduce(torch.Tensor.add_, terms)


def _whole_rows(
    inputs: MaskInputs, mask: torch.Tensor | None, unit: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    output, fallback = weighted_attention(
        inputs.queries,
        inputs.keys,
        inputs.values,
        inputs.allowed,
        inputs.scaling,
        mask,
        inputs.bias,
        logits=inputs.logits,
        out_dtype=torch.float32,
        unit_mask=unit,
    )
    return output.transpose(1, 2), fallback


class _CallRecord:
    """Device-side sums of one call over its chunks (density counts, error norms, metrics)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.metrics: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _add(self, name: str, value: torch.Tensor) -> None:
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    def add(
        self, inputs: MaskInputs, mask: torch.Tensor | None, output: torch.Tensor, error: bool
    ) -> None:
        allowed_rows = count_last(inputs.allowed)
        self._add("allowed", allowed_rows.sum())
        if mask is None:
            self._add("selected", allowed_rows.sum())
            self._add("fallback", torch.zeros((), dtype=torch.long, device=allowed_rows.device))
        else:
            selected_rows = count_last(inputs.allowed & mask.bool())
            fallback = (selected_rows == 0) & (allowed_rows > 0)
            self._add("selected", torch.where(fallback, allowed_rows, selected_rows).sum())
            self._add("fallback", fallback.sum())
        if error and mask is not None:
            reference, _ = _whole_rows(inputs, None)
            self._add("reference_sq", reference.double().pow(2).sum())
            self._add("difference_sq", (reference - output).double().pow(2).sum())
        for name, (total, count) in inputs.metrics.items():
            if name in self.metrics:
                old_total, old_count = self.metrics[name]
                total, count = old_total + total, old_count + count
            self.metrics[name] = (total, count)

    def write(
        self, stats: AttentionStats, layer_idx: int, q_len: int, k_len: int, dense: bool
    ) -> None:
        error = None
        if stats.output_error:
            if dense:
                error = torch.zeros((), dtype=torch.float64)
            else:  # NaN (undefined) when the dense output is zero
                norm = self.sums["reference_sq"].sqrt()
                error = self.sums["difference_sq"].sqrt() / norm.where(norm > 0, torch.nan)
        stats.record(
            layer=layer_idx,
            n_queries=q_len,
            n_keys=k_len,
            selected=self.sums["selected"],
            allowed=self.sums["allowed"],
            dense_fallback_rows=self.sums["fallback"],
            output_error=error,
            extra={name: total.double() / count for name, (total, count) in self.metrics.items()},
        )
