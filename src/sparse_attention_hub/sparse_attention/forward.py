"""The sparse attention function an adapter calls for every attention layer call in sparse mode.

It builds the mask by applying the config's maskers in order (each returns the union with the mask
so far), computes the §5 importance-weighted softmax in float32, and records statistics. Layers
in `dense_layers`, an empty masker list and `config=None` use the same math with the full mask.
"""

from __future__ import annotations

import torch

from sparse_attention_hub.sparse_attention.attention import weighted_attention
from sparse_attention_hub.sparse_attention.config import ResearchAttentionConfig
from sparse_attention_hub.sparse_attention.maskers.base import MaskInputs
from sparse_attention_hub.sparse_attention.state import SparseState
from sparse_attention_hub.sparse_attention.stats import AttentionStats


def build_mask(config: ResearchAttentionConfig, inputs: MaskInputs) -> torch.Tensor:
    """Apply the maskers in order from an empty float32 mask, `(batch, heads, q_len, k_len)`."""
    mask = torch.zeros(inputs.allowed.shape, dtype=torch.float32, device=inputs.queries.device)
    for masker in config.masker_configs:
        mask = masker.add_mask(inputs, mask)
    return mask


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
) -> torch.Tensor:
    """Sparse attention output `(batch, q_len, heads, head_dim)` in `query`'s dtype.

    query `(batch, heads, q_len, head_dim)`; key / value `(batch, kv_heads, k_len, head_dim)`, not
    repeated for GQA; `attention_mask` as transformers passes it (None = causal, bool True =
    attend, or additive float). The keys are the whole KV cache: query row i sits at position
    k_len - q_len + i.
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
    inputs = MaskInputs.build(
        query,
        key,
        value,
        attention_mask,
        scaling,
        layer_idx=layer_idx,
        state=state,
        seed=config.seed if config is not None else 0,
    )
    dense = config is None or not config.masker_configs or layer_idx in config.dense_layers
    mask = None if dense or config is None else build_mask(config, inputs)
    output, fallback = weighted_attention(
        inputs.queries,
        inputs.keys,
        inputs.values,
        inputs.allowed,
        scaling,
        mask,
        inputs.bias,
        logits=inputs.logits,
        out_dtype=torch.float32,
    )
    if stats is not None:
        _record(stats, inputs, mask, fallback, output)
    return output.to(query.dtype)


def _record(
    stats: AttentionStats,
    inputs: MaskInputs,
    mask: torch.Tensor | None,
    fallback: torch.Tensor,
    output: torch.Tensor,
) -> None:
    """Density (fallback rows and dense calls fully selected) and the optional output error."""
    allowed_rows = inputs.allowed.sum(dim=-1)
    n_allowed = int(allowed_rows.sum())
    if mask is None:
        n_selected = n_allowed
    else:
        selected_rows = (inputs.allowed & (mask > 0)).sum(dim=-1)
        n_selected = int(torch.where(fallback, allowed_rows, selected_rows).sum())
    error = None
    if stats.output_error:
        error = 0.0
        if mask is not None:
            reference, _ = weighted_attention(
                inputs.queries,
                inputs.keys,
                inputs.values,
                inputs.allowed,
                inputs.scaling,
                None,
                inputs.bias,
                logits=inputs.logits,
                out_dtype=torch.float32,
            )
            norm = float(reference.norm())
            error = float((reference - output).norm()) / norm if norm > 0 else None
    stats.record(
        layer=inputs.layer_idx,
        n_queries=inputs.n_queries,
        n_keys=inputs.n_keys,
        selected=n_selected,
        allowed=n_allowed,
        dense_fallback_rows=int(fallback.sum()),
        output_error=error,
        extra=inputs.metrics,
    )
