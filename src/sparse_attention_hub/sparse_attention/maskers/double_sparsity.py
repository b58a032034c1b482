"""`double_sparsity`: top-k by a few outlier channels with low-bit labels (docs/methods.md §6.7).

*Paper*: Double Sparsity, Yang et al., 2024 — offline-calibrated channel ranking per layer and
head; approximate scores from r = D / group_factor channels, quantised to `label_bits`.

Channel file (JSON): `"model.layers.{l}.self_attn.{channel_selection}"` -> one list per head
(query heads, or KV heads) of the D channel indices sorted by importance.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.sparse_attention.budget import Bits, Budget, PositiveInt, effective_size
from sparse_attention_hub.sparse_attention.mask import topk_select
from sparse_attention_hub.sparse_attention.maskers.base import (
    MASKERS,
    MaskerConfig,
    MaskInputs,
    add_selected,
    format_budget,
)
from sparse_attention_hub.sparse_attention.quantize import pseudo_quantize


@lru_cache(maxsize=4)
def _load_file(path: str, mtime_ns: int) -> dict[str, Any]:
    del mtime_ns  # part of the cache key only: an edited file is read again
    with open(path, encoding="utf-8") as handle:
        table = json.load(handle)
    if not isinstance(table, dict):
        raise ConfigError(f"sorted_channel_file {path!r} must hold a JSON object")
    return table


def load_channels(path: str) -> dict[str, Any]:
    """The whole channel table of a model, read once per file version."""
    if not os.path.isfile(path):
        raise ConfigError(f"sorted_channel_file {path!r} does not exist")
    return _load_file(os.path.abspath(path), os.stat(path).st_mtime_ns)


@MASKERS.register("double_sparsity")
class DoubleSparsityTopKConfig(MaskerConfig):
    """Top k = effective `heavy_size` candidates by Q_r . K_r / sqrt(r) + a_ij."""

    type: Literal["double_sparsity"] = "double_sparsity"
    heavy_size: Budget
    sorted_channel_file: str
    group_factor: PositiveInt = 16
    label_bits: Bits = 4
    channel_selection: Literal["q_proj", "k_proj", "qk_proj"] = "qk_proj"

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        k = effective_size(self.heavy_size, inputs.n_keys)
        if k == 0:
            return previous.clone()
        batch, heads, q_len, dim = inputs.queries.shape
        channels = self.channels(inputs.layer_idx, dim, heads, inputs.keys.shape[1])
        channels = channels.to(inputs.queries.device)
        r = channels.shape[-1]
        queries = inputs.queries.gather(-1, channels[None, :, None, :].expand(batch, -1, q_len, -1))
        queries = pseudo_quantize(queries, self.label_bits)
        keys = self.key_labels(inputs, channels)
        scores = queries @ keys.transpose(-1, -2) / math.sqrt(r)
        if inputs.bias is not None:
            scores = scores + inputs.bias
        eligible = inputs.candidates(previous)
        return add_selected(previous, topk_select(scores, eligible, k))

    def key_labels(self, inputs: MaskInputs, channels: torch.Tensor) -> torch.Tensor:
        """Quantised r channels of every key for every query head, `(B, H, N, r)`.

        Each key's label depends on that key alone, so labels are kept in the state and only the
        new keys of a call are labelled; K is never repeated per query head (the gather reads a
        broadcast view).
        """
        batch, kv_heads, _, dim = inputs.keys.shape
        groups, r = inputs.groups, channels.shape[-1]

        def compute(start: int, stop: int) -> torch.Tensor:
            keys = inputs.keys[:, :, start:stop]
            n_keys = keys.shape[2]
            view = keys.unsqueeze(2).expand(batch, kv_heads, groups, n_keys, dim)
            index = channels.view(1, kv_heads, groups, 1, r).expand(batch, -1, -1, n_keys, -1)
            picked = view.gather(-1, index).reshape(batch, kv_heads * groups, n_keys, r)
            return pseudo_quantize(picked, self.label_bits)

        name = (
            f"double_sparsity_{self.sorted_channel_file}_{self.group_factor}_"
            f"{self.label_bits}_{self.channel_selection}"
        )
        block = inputs.key_block(batch * kv_heads * groups * (dim + 4 * r) * 4)
        return inputs.state.prefix(inputs.layer_idx, name, inputs.n_keys, compute, block_rows=block)

    def channels(self, layer_idx: int, dim: int, heads: int, kv_heads: int) -> torch.Tensor:
        """The first r channels of every query head for one layer, `(heads, r)` int64."""
        path = self.sorted_channel_file
        mtime = os.stat(path).st_mtime_ns if os.path.isfile(path) else 0
        return _layer_channels(self, layer_idx, dim, heads, kv_heads, mtime)

    def referenced_files(self) -> list[str]:
        return [self.sorted_channel_file]

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(
            heavy_size=4,
            sorted_channel_file=write_random_channels(workdir, heads, head_dim),
            group_factor=2,
        )

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        return cls(
            heavy_size=1.0,
            sorted_channel_file=write_random_channels(workdir, heads, head_dim),
            group_factor=2,
        )

    def key_bound(self, n_keys: int) -> int:
        return min(effective_size(self.heavy_size, n_keys), n_keys)

    def selects_some(self, n_keys: int, plain_causal: bool) -> bool:
        return effective_size(self.heavy_size, n_keys) >= 1

    def short_name(self) -> str:
        return f"ds{format_budget(self.heavy_size)}g{self.group_factor}b{self.label_bits}"


@lru_cache(maxsize=256)
def _layer_channels(
    config: DoubleSparsityTopKConfig,
    layer_idx: int,
    dim: int,
    heads: int,
    kv_heads: int,
    mtime: int,
) -> torch.Tensor:
    del mtime  # part of the cache key only
    path = config.sorted_channel_file
    if dim % config.group_factor:
        raise ConfigError(f"group_factor {config.group_factor} does not divide head_dim {dim}")
    r = dim // config.group_factor
    key = f"model.layers.{layer_idx}.self_attn.{config.channel_selection}"
    table = load_channels(path)
    if key not in table:
        raise ConfigError(f"{path}: no channel entry {key!r} for layer {layer_idx}")
    lists = table[key]
    if not isinstance(lists, list) or len(lists) not in (heads, kv_heads):
        count = len(lists) if isinstance(lists, list) else type(lists).__name__
        raise ConfigError(f"{path}: {key!r} must hold {heads} or {kv_heads} lists, got {count}")
    rows = []
    for head, channels in enumerate(lists):
        top = channels[:r] if isinstance(channels, list) else None
        if top is None or len(top) < r or not all(isinstance(c, int) and 0 <= c < dim for c in top):
            raise ConfigError(
                f"{path}: {key!r} head {head} needs >= {r} channel ints in [0, {dim})"
            )
        rows.append(top)
    table_tensor = torch.tensor(rows, dtype=torch.long)
    if len(rows) != heads:  # KV-head lists: query head h uses list h // g
        table_tensor = table_tensor.repeat_interleave(heads // kv_heads, dim=0)
    return table_tensor


def write_random_channels(
    directory: Path, heads: int, dim: int, layers: int = 2, seed: int = 0
) -> str:
    """A random channel file (`qk_proj` per layer) for `layers` model layers, for examples and tests."""
    generator = torch.Generator().manual_seed(seed)
    table = {
        f"model.layers.{layer}.self_attn.qk_proj": [
            torch.randperm(dim, generator=generator).tolist() for _ in range(heads)
        ]
        for layer in range(layers)
    }
    path = Path(directory) / f"channels-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(table))
    return str(path)
