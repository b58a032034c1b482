"""Shared builders for the sparse-attention tests: random tensors, inputs and example configs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from hypothesis import strategies as st
from safetensors.torch import save_file

from sparse_attention_hub.sparse_attention import (
    AdaptiveSamplingConfig,
    DoubleSparsityTopKConfig,
    HashAttentionTopKConfig,
    LocalMaskerConfig,
    MagicPigConfig,
    MaskerConfig,
    MaskInputs,
    OracleTopKConfig,
    OracleTopPConfig,
    QuestTopKConfig,
    RandomSamplingConfig,
    SinkMaskerConfig,
    SparseState,
)


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


def write_hat_weights(
    directory: Path,
    heads: int,
    dim: int,
    layers: int = 2,
    hidden: int = 8,
    bits: int = 16,
    seed: int = 1,
) -> str:
    """A random HashAttention weight file for `layers` model layers (2-layer MLPs)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(layers):
        for role in ("query", "key"):
            for j, (d_in, d_out) in enumerate([(dim, hidden), (hidden, bits)]):
                prefix = f"layers.{layer}.{role}.{j}"
                tensors[f"{prefix}.weight"] = torch.randn(heads, d_in, d_out, generator=generator)
                tensors[f"{prefix}.bias"] = torch.randn(heads, d_out, generator=generator) * 0.1
    path = directory / f"hat-{uuid.uuid4().hex}.safetensors"
    save_file(tensors, str(path))
    return str(path)


def write_channels(directory: Path, heads: int, dim: int, layers: int = 2, seed: int = 0) -> str:
    """A random Double Sparsity channel file (`qk_proj`) for `layers` model layers."""
    generator = torch.Generator().manual_seed(seed)
    table = {
        f"model.layers.{layer}.self_attn.qk_proj": [
            torch.randperm(dim, generator=generator).tolist() for _ in range(heads)
        ]
        for layer in range(layers)
    }
    path = directory / f"channels-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(table))
    return str(path)


HAT_KW = {"hat_mlp_layers": 2, "hat_mlp_hidden_size": 8, "hat_bits": 16}

ExampleFactory = Callable[[Shape, Path], MaskerConfig]

# For every registered masker: a typical config, and a full-budget config (None where the
# method has no setting that selects every key with p = 1, e.g. MagicPIG's p < 1).
EXAMPLES: dict[str, tuple[ExampleFactory, ExampleFactory | None]] = {
    "sink": (
        lambda s, d: SinkMaskerConfig(sink_size=2),
        lambda s, d: SinkMaskerConfig(sink_size=1.0),
    ),
    "local": (
        lambda s, d: LocalMaskerConfig(window_size=3),
        lambda s, d: LocalMaskerConfig(window_size=1.0),
    ),
    "oracle_topk": (
        lambda s, d: OracleTopKConfig(heavy_size=0.25),
        lambda s, d: OracleTopKConfig(heavy_size=1.0),
    ),
    "oracle_topp": (
        lambda s, d: OracleTopPConfig(top_p=0.5),
        lambda s, d: OracleTopPConfig(top_p=1.0),
    ),
    "quest": (
        lambda s, d: QuestTopKConfig(heavy_size=8, page_size=4),
        lambda s, d: QuestTopKConfig(heavy_size=1.0, page_size=4),
    ),
    "hashattention": (
        lambda s, d: HashAttentionTopKConfig(
            heavy_size=4, hat_weight_file=write_hat_weights(d, s.heads, s.dim), **HAT_KW
        ),
        lambda s, d: HashAttentionTopKConfig(
            heavy_size=1.0, hat_weight_file=write_hat_weights(d, s.heads, s.dim), **HAT_KW
        ),
    ),
    "double_sparsity": (
        lambda s, d: DoubleSparsityTopKConfig(
            heavy_size=4, sorted_channel_file=write_channels(d, s.heads, s.dim), group_factor=2
        ),
        lambda s, d: DoubleSparsityTopKConfig(
            heavy_size=1.0, sorted_channel_file=write_channels(d, s.heads, s.dim), group_factor=2
        ),
    ),
    "random_sampling": (
        lambda s, d: RandomSamplingConfig(sampling_rate=0.3),
        lambda s, d: RandomSamplingConfig(sampling_rate=1.0),
    ),
    "adaptive_sampling": (
        lambda s, d: AdaptiveSamplingConfig(base_rate_sampling=0.5, epsilon=0.2, delta=0.2),
        lambda s, d: AdaptiveSamplingConfig(base_rate_sampling=10**6, epsilon=0.2, delta=0.2),
    ),
    "magicpig": (lambda s, d: MagicPigConfig(lsh_l=8, lsh_k=2), None),
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
