"""Our attention function as a transformers attention backend, switchable without reloading.

`register_attention()` (called when an adapter is built, never at import) registers one function
under `ATTENTION_NAME` in `AttentionInterface`, and sdpa's mask builder under the same name in
`AttentionMaskInterface` — without the latter transformers hands the function no mask at all.
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
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, sah_attention_forward)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


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
