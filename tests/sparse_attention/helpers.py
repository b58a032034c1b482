"""Shared builders for the sparse-attention tests: random tensors, inputs and example configs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from hypothesis import strategies as st

from sparse_attention_hub.sparse_attention import MASKERS, MaskerConfig, MaskInputs, SparseState


@dataclass(frozen=True)
class Shape:
    batch: int
    kv_heads: int
    groups: int
    q_len: int
    k_len: int
    dim: int

    @property
    def heads(self) -> int:
        return self.kv_heads * self.groups


@st.composite
def shapes(draw: st.DrawFn, max_keys: int = 40) -> Shape:
    q_len = draw(st.integers(1, 5))
    return Shape(
        batch=draw(st.integers(1, 2)),
        kv_heads=draw(st.integers(1, 2)),
        groups=draw(st.sampled_from([1, 3])),
        q_len=q_len,
        k_len=draw(st.integers(q_len, max_keys)),
        dim=draw(st.sampled_from([4, 8, 16])),
    )


def qkv(
    shape: Shape, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(shape.batch, shape.heads, shape.q_len, shape.dim, generator=generator)
    k = torch.randn(shape.batch, shape.kv_heads, shape.k_len, shape.dim, generator=generator)
    v = torch.randn(shape.batch, shape.kv_heads, shape.k_len, shape.dim, generator=generator)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def inputs_for(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
    state: SparseState | None = None,
    layer_idx: int = 0,
    seed: int = 0,
) -> MaskInputs:
    state = state if state is not None else SparseState()
    state.begin_call(layer_idx, k.shape[2] - q.shape[2])
    scaling = q.shape[-1] ** -0.5
    return MaskInputs.build(
        q, k, v, attention_mask, scaling, layer_idx=layer_idx, state=state, seed=seed
    )


def empty_mask(inputs: MaskInputs) -> torch.Tensor:
    return torch.zeros(inputs.allowed.shape, dtype=torch.float32)


HAT_KW = {"hat_mlp_layers": 2, "hat_mlp_hidden_size": 8, "hat_bits": 16}

ExampleFactory = Callable[[Shape, Path], MaskerConfig]


def _typical(cls: type[MaskerConfig]) -> ExampleFactory:
    return lambda shape, directory: cls.example(shape.heads, shape.dim, directory)


def _full_budget(cls: type[MaskerConfig]) -> Callable[[Shape, Path], MaskerConfig | None]:
    return lambda shape, directory: cls.full_budget_example(shape.heads, shape.dim, directory)


# For every registered masker, from its own file: a typical config, and a full-budget config
# (the factory returns None where the method has no setting that keeps every key with p = 1).
EXAMPLES: dict[str, tuple[ExampleFactory, Callable[[Shape, Path], MaskerConfig | None]]] = {
    name: (_typical(MASKERS.get(name)), _full_budget(MASKERS.get(name))) for name in MASKERS
}


def reference_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """Plain float32 softmax attention with GQA, `(batch, q_len, heads, dim)`."""
    groups = q.shape[1] // k.shape[1]
    k = k.float().repeat_interleave(groups, dim=1)
    v = v.float().repeat_interleave(groups, dim=1)
    logits = (q.float() @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    probs = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    return (probs @ v).transpose(1, 2)
