"""Our attention function as a transformers attention backend, switchable without reloading.

`register_attention()` (called when an adapter is built, never at import) registers one function
under `ATTENTION_NAME` in `AttentionInterface`, and a mask builder under the same name in
`AttentionMaskInterface` — without the latter transformers hands the function no mask at all. The
builder is sdpa's, except that a plain causal mask becomes None (see `causal_or_sdpa_mask`).
`attention_mode(model, run)` switches a model to it for a block and restores the previous
implementation in `finally`. The function finds what to compute (config, state, statistics) in a
context variable set by `attention_mode`, so several adapters in one process never mix up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch

from sparse_attention_hub.sparse_attention import (
    DEFAULT_MEMORY_MIB,
    AttentionStats,
    ResearchAttentionConfig,
    SparseState,
    dense_attention,
    sparse_attention_forward,
)

ATTENTION_NAME = "sah_sparse"


@dataclass(frozen=True)
class AttentionRun:
    """What the attention calls of one block compute: dense (config None) or a sparse config,
    and the bound on one call's extra memory (its queries are processed in chunks)."""

    config: ResearchAttentionConfig | None = None
    state: SparseState | None = None
    stats: AttentionStats | None = None
    memory_mib: int = DEFAULT_MEMORY_MIB


_ACTIVE: ContextVar[AttentionRun | None] = ContextVar("sah_attention_run", default=None)


def register_attention() -> None:
    """Register the function and its mask builder under `ATTENTION_NAME` (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION_NAME, sah_attention_forward)
    AttentionMaskInterface.register(ATTENTION_NAME, causal_or_sdpa_mask)


def causal_or_sdpa_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: Any = 0,
    kv_offset: int = 0,
    mask_function: Any = None,
    attention_mask: torch.Tensor | None = None,
    local_size: int | None = None,
    allow_is_causal_skip: bool = True,
    **kwargs: Any,
) -> torch.Tensor | None:
    """sdpa's mask builder, but None for a plain causal mask over the whole cache.

    Our attention reads None as "query row i sees keys up to N - Q + i": exactly the mask of a
    question prefilled after a cached context, which sdpa materialises (it skips the mask only
    for Q = 1 or Q = N). With None, sparse attention knows no row can be empty and may take the
    gathered path (docs/methods.md §5.1). Built once per forward pass, not per layer.
    """
    from transformers.masking_utils import causal_mask_function, sdpa_mask

    mask_function = causal_mask_function if mask_function is None else mask_function
    plain = (
        allow_is_causal_skip
        and mask_function is causal_mask_function
        and local_size is None
        and kv_offset == 0
        and isinstance(q_offset, int)
        and q_offset + q_length == kv_length
    )
    if plain and (attention_mask is None or bool(attention_mask.all())):
        return None
    return sdpa_mask(
        batch_size,
        q_length,
        kv_length,
        q_offset,
        kv_offset,
        mask_function,
        attention_mask,
        local_size,
        allow_is_causal_skip=allow_is_causal_skip,
        **kwargs,
    )


@contextmanager
def attention_mode(model: Any, run: AttentionRun) -> Iterator[None]:
    """Run the block with `model` on our attention function computing `run`; restore after."""
    previous = model.config._attn_implementation
    token = _ACTIVE.set(run)
    try:
        model.set_attn_implementation(ATTENTION_NAME)
        if model.config._attn_implementation != ATTENTION_NAME:
            # transformers only logs a warning for a model class that cannot switch: every
            # "sparse" answer would silently come from the native dense attention
            raise NotImplementedError(
                f"{type(model).__name__} cannot switch its attention implementation at run time "
                "(its attention layers do not use transformers' AttentionInterface)"
            )
        yield
    finally:
        model.set_attn_implementation(previous)
        _ACTIVE.reset(token)


def sah_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: q (B, H, Q, D), k/v (B, H_kv, N, D) -> (B, Q, H, D).

    Dense config -> `dense_attention`; a sparse config -> `sparse_attention_forward`.
    """
    run = _ACTIVE.get()
    if run is None:
        raise RuntimeError(
            f"attention implementation {ATTENTION_NAME!r} used outside attention_mode()"
        )
    for feature in ("softcap", "s_aux", "sinks"):
        if kwargs.get(feature) is not None:
            raise NotImplementedError(
                f"{ATTENTION_NAME} attention does not support {feature!r} (model {type(module).__name__})"
            )
    if scaling is None:
        scaling = float(query.shape[-1]) ** -0.5
    if run.config is None or run.state is None:
        return dense_attention(query, key, value, attention_mask, scaling, run.memory_mib), None
    output = sparse_attention_forward(
        query,
        key,
        value,
        attention_mask,
        scaling,
        layer_idx=getattr(module, "layer_idx", None),
        config=run.config,
        state=run.state,
        stats=run.stats,
        memory_mib=run.memory_mib,
    )
    return output, None
