"""`hashattention`: top-k by learned bit signatures (docs/methods.md §6.6).

*Paper*: HashAttention, Desai et al., ICML 2025 — per-head MLPs map queries and keys to 32-bit
signatures; keys are ranked by Hamming distance to the query's signature.

Weights file (safetensors): `layers.{l}.query.{j}.weight` `(heads, d_in, d_out)`,
`layers.{l}.query.{j}.bias` `(heads, d_out)`, and the same under `key`, for j < hat_mlp_layers.
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from pydantic import field_validator

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.sparse_attention.budget import Budget, PositiveInt, effective_size
from sparse_attention_hub.sparse_attention.mask import topk_select
from sparse_attention_hub.sparse_attention.maskers.base import (
    MASKERS,
    MaskerConfig,
    MaskInputs,
    add_selected,
    format_budget,
)

Mlp = tuple[tuple[torch.Tensor, torch.Tensor], ...]

_ACTIVATIONS = {
    "relu": torch.relu,
    "silu": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "tanh": torch.tanh,
}


@lru_cache(maxsize=4)
def _load_file(path: str, mtime_ns: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    del mtime_ns  # part of the cache key only: an edited file is read again
    return load_file(path, device="cpu")


def load_weights(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file (CPU), read once per file version."""
    if not os.path.isfile(path):
        raise ConfigError(f"hat_weight_file {path!r} does not exist")
    return _load_file(os.path.abspath(path), os.stat(path).st_mtime_ns)


def apply_mlp(x: torch.Tensor, mlp: Mlp, activation: str) -> torch.Tensor:
    """Per-head MLP: `(B, H, n, d_in)` -> `(B, H, n, d_out)`; no act after the last."""
    for index, (weight, bias) in enumerate(mlp):
        x = torch.matmul(x, weight).add_(bias[:, None, :])
        if index < len(mlp) - 1:
            x = _ACTIVATIONS[activation](x)
    return x


def pack_signs(x: torch.Tensor) -> torch.Tensor:
    """The signature of `x` `(..., bits)`: sign bits (1 where x >= 0, so sign(0) = +1) packed 8
    per byte, `(..., ceil(bits / 8))` uint8, the last byte padded with 0 bits."""
    bits = x.shape[-1]
    signs = (x >= 0).to(torch.uint8)
    if bits % 8:
        signs = torch.nn.functional.pad(signs, (0, -bits % 8))
    weights = torch.tensor([1 << b for b in range(8)], dtype=torch.uint8, device=x.device)
    return (signs.unflatten(-1, (-1, 8)) * weights).sum(-1, dtype=torch.uint8)


def agreement(query_codes: torch.Tensor, key_codes: torch.Tensor, bits: int) -> torch.Tensor:
    """bits - 2 * Hamming distance of packed signatures, float32 `(B, H, Q, N)`.

    query_codes `(B, H, Q, bytes)`, key_codes `(B, H, N, bytes)`. Equal to the dot
    product of the +-1 signatures, read from 1 bit per sign instead of 4 bytes. Signatures of a
    multiple of 32 bits are counted 4 bytes at a time (half the work of byte by byte).
    """
    if query_codes.shape[-1] % 4 == 0:
        x = _words(query_codes)[..., :, None, :] ^ _words(key_codes)[..., None, :, :]
        # popcount of every int32 word (SWAR); the masks clear what an arithmetic shift copies
        x = x.sub_((x >> 1).bitwise_and_(0x55555555))
        x = (x >> 2).bitwise_and_(0x33333333).add_(x.bitwise_and_(0x33333333))
        x = x.add_(x >> 4).bitwise_and_(0x0F0F0F0F)
        x = x.mul_(0x01010101) >> 24  # the byte sums (<= 32) land in the top byte
    else:
        x = query_codes[..., :, None, :] ^ key_codes[..., None, :, :]  # (B, H, Q, N, bytes)
        x = x.sub_((x >> 1).bitwise_and_(0x55))  # popcount of every byte (SWAR)
        x = (x >> 2).bitwise_and_(0x33).add_(x.bitwise_and_(0x33))
        x = x.add_(x >> 4).bitwise_and_(0x0F)
    distance = x.sum(dim=-1, dtype=torch.int32)
    return distance.mul_(-2).add_(bits).float()


def _words(codes: torch.Tensor) -> torch.Tensor:
    """Packed signature bytes `(..., 4w)` as int32 words `(..., w)`."""
    return codes.contiguous().view(torch.int32)


@MASKERS.register("hashattention")
class HashAttentionTopKConfig(MaskerConfig):
    """Top k = effective `heavy_size` candidates by signature agreement hat_bits - 2 * Hamming."""

    type: Literal["hashattention"] = "hashattention"
    heavy_size: Budget
    hat_weight_file: str
    hat_mlp_layers: PositiveInt
    hat_mlp_hidden_size: PositiveInt
    hat_bits: PositiveInt = 32
    hat_mlp_activation: Literal["relu", "silu", "gelu", "tanh"] = "silu"

    @field_validator("hat_weight_file")
    @classmethod
    def _safetensors_only(cls, value: str) -> str:
        if not value.endswith(".safetensors"):
            raise ValueError(f"hat_weight_file must be a .safetensors file, got {value!r}")
        return value

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        k = effective_size(self.heavy_size, inputs.n_keys)
        if k == 0:
            return previous.clone()
        heads, dim = inputs.queries.shape[1], inputs.queries.shape[-1]
        query_mlp, key_mlp = self.layer_weights(inputs.layer_idx, dim, heads, inputs.keys.device)

        def key_signatures(start: int, stop: int) -> torch.Tensor:
            keys = inputs.per_query_head(inputs.keys[:, :, start:stop])
            return pack_signs(apply_mlp(keys, key_mlp, self.hat_mlp_activation))

        # the state keeps packed signatures (bits / 8 bytes per key and head, 1/32 of float
        # signs), so even a first call over a long context stays within the memory budget
        batch = inputs.queries.shape[0]
        width = dim + self.hat_mlp_hidden_size * self.hat_mlp_layers + self.hat_bits
        block = inputs.key_block(batch * heads * width * 4 * 2)
        key_codes = inputs.state.prefix(
            inputs.layer_idx, self.cache_name(), inputs.n_keys, key_signatures, block_rows=block
        )
        query_codes = pack_signs(apply_mlp(inputs.queries, query_mlp, self.hat_mlp_activation))
        scores = agreement(query_codes, key_codes, self.hat_bits)
        eligible = inputs.candidates(previous)
        selected = topk_select(scores, eligible, k, levels=self.hat_bits)
        return add_selected(previous, selected)

    def layer_weights(
        self, layer_idx: int, dim: int, heads: int, device: torch.device
    ) -> tuple[Mlp, Mlp]:
        """Validated (query MLP, key MLP) of one layer on `device` (moved once, then cached).

        Cached by file and MLP shape only, so configs that differ in `heavy_size` share weights.
        """
        path = self.hat_weight_file
        mtime = os.stat(path).st_mtime_ns if os.path.isfile(path) else 0
        shape = (self.hat_mlp_layers, self.hat_mlp_hidden_size, self.hat_bits)
        return _layer_weights(path, mtime, shape, layer_idx, dim, heads, str(device))

    def cache_name(self) -> str:
        """State key of the key signatures: everything they depend on, so two HashAttention
        maskers in one config never read each other's signatures."""
        return (
            f"hat_keys_{self.hat_weight_file}_{self.hat_mlp_layers}_{self.hat_mlp_hidden_size}_"
            f"{self.hat_mlp_activation}_{self.hat_bits}"
        )

    def referenced_files(self) -> list[str]:
        return [self.hat_weight_file]

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(
            heavy_size=4,
            hat_weight_file=write_random_weights(workdir, heads, head_dim),
            **_EXAMPLE_MLP,
        )

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        return cls(
            heavy_size=1.0,
            hat_weight_file=write_random_weights(workdir, heads, head_dim),
            **_EXAMPLE_MLP,
        )

    def key_bound(self, n_keys: int) -> int:
        return min(effective_size(self.heavy_size, n_keys), n_keys)

    def selects_some(self, n_keys: int, plain_causal: bool) -> bool:
        return effective_size(self.heavy_size, n_keys) >= 1

    def short_name(self) -> str:
        return f"hat{format_budget(self.heavy_size)}b{self.hat_bits}"


@lru_cache(maxsize=256)
def _layer_weights(
    path: str,
    mtime: int,
    mlp_shape: tuple[int, int, int],
    layer_idx: int,
    dim: int,
    heads: int,
    device: str,
) -> tuple[Mlp, Mlp]:
    """Both MLPs of one layer, shapes checked against `mlp_shape` = (layers, hidden, bits)."""
    del mtime  # part of the cache key only
    mlp_layers, hidden, bits = mlp_shape
    tensors = load_weights(path)
    mlps = []
    for role in ("query", "key"):
        layers = []
        for j in range(mlp_layers):
            d_in = dim if j == 0 else hidden
            d_out = bits if j == mlp_layers - 1 else hidden
            pair = []
            for part, shape in (("weight", (heads, d_in, d_out)), ("bias", (heads, d_out))):
                name = f"layers.{layer_idx}.{role}.{j}.{part}"
                if name not in tensors:
                    raise ConfigError(f"{path}: tensor {name!r} is missing")
                if tuple(tensors[name].shape) != shape:
                    raise ConfigError(
                        f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                        f"expected {shape} (heads={heads}, head_dim={dim}, hat_bits={bits}, "
                        f"hat_mlp_hidden_size={hidden})"
                    )
                pair.append(tensors[name].to(device=device, dtype=torch.float32))
            layers.append((pair[0], pair[1]))
        extra = f"layers.{layer_idx}.{role}.{mlp_layers}.weight"
        if extra in tensors:
            raise ConfigError(
                f"{path}: tensor {extra!r} exists, but hat_mlp_layers is {mlp_layers} "
                "(the file's MLP has more layers)"
            )
        mlps.append(tuple(layers))
    return mlps[0], mlps[1]


_EXAMPLE_MLP = {"hat_mlp_layers": 2, "hat_mlp_hidden_size": 8, "hat_bits": 16}


def write_random_weights(
    directory: Path,
    heads: int,
    dim: int,
    layers: int = 2,
    hidden: int = 8,
    bits: int = 16,
    seed: int = 1,
) -> str:
    """A random weights file in the layout above (2-layer MLPs), for examples and tests."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(layers):
        for role in ("query", "key"):
            for j, (d_in, d_out) in enumerate([(dim, hidden), (hidden, bits)]):
                prefix = f"layers.{layer}.{role}.{j}"
                tensors[f"{prefix}.weight"] = torch.randn(heads, d_in, d_out, generator=generator)
                tensors[f"{prefix}.bias"] = torch.randn(heads, d_out, generator=generator) * 0.1
    path = Path(directory) / f"hat-{uuid.uuid4().hex}.safetensors"
    save_file(tensors, str(path))
    return str(path)
