"""`quest`: query-aware page selection by min/max key bounds (docs/methods.md §6.5).

*Paper*: Quest, Tang et al., ICML 2024 — page size 16, the first two layers dense.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

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


def page_bounds(keys: torch.Tensor, page_size: int, label_bits: int) -> torch.Tensor:
    """Per-page channel min and max of `keys` `(B, H_kv, N, D)`.

    Returns `(batch, kv_heads, ceil(n / page_size), 2 * dim)`: mins then maxs, pseudo-quantised
    along the channels when `label_bits` < 16. The last page may be partial.
    """
    batch, heads, n_keys, dim = keys.shape
    n_pages = math.ceil(n_keys / page_size)
    pad = n_pages * page_size - n_keys
    pages = F.pad(keys, (0, 0, 0, pad), value=float("nan"))
    pages = pages.view(batch, heads, n_pages, page_size, dim)
    low = torch.where(pages.isnan(), float("inf"), pages).amin(dim=3)
    high = torch.where(pages.isnan(), float("-inf"), pages).amax(dim=3)
    low, high = pseudo_quantize(low, label_bits), pseudo_quantize(high, label_bits)
    return torch.cat([low, high], dim=-1)


def page_scores(queries: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Upper bound of q . k per page: sum_d max(q_d m_d, q_d M_d), `(B, H, Q, pages)`.

    Computed as q+ . M + q- . m (positive / negative parts of q): two matmuls, no 5-D tensor.
    `low` / `high` are per query head, `(B, H, pages, D)`.
    """
    scores = queries.clamp(min=0) @ high.transpose(-1, -2)
    return scores + queries.clamp(max=0) @ low.transpose(-1, -2)


@MASKERS.register("quest")
class QuestTopKConfig(MaskerConfig):
    """Selects the ceil(K / page_size) pages with the highest upper bound of q . k."""

    type: Literal["quest"] = "quest"
    heavy_size: Budget
    page_size: PositiveInt = 16
    label_bits: Bits = 16

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        n_keys, size = inputs.n_keys, self.page_size
        n_pages = math.ceil(n_keys / size)
        k_pages = math.ceil(effective_size(self.heavy_size, n_keys) / size)
        if k_pages == 0 or n_keys == 0:
            return previous.clone()
        bounds = self.bounds(inputs)
        dim = inputs.queries.shape[-1]
        low = inputs.per_query_head(bounds[..., :dim])  # (B, H, pages, D)
        high = inputs.per_query_head(bounds[..., dim:])
        scores = page_scores(inputs.queries, low, high)
        pad = n_pages * size - n_keys
        allowed = F.pad(inputs.allowed, (0, pad), value=False)
        page_allowed = allowed.view(*allowed.shape[:-1], n_pages, size).any(dim=-1)
        chosen = topk_select(scores, page_allowed, k_pages)
        keys_chosen = chosen.repeat_interleave(size, dim=-1)[..., :n_keys]
        return add_selected(previous, keys_chosen & inputs.allowed)

    def key_bound(self, n_keys: int) -> int:
        pages = math.ceil(effective_size(self.heavy_size, n_keys) / self.page_size)
        return min(pages * self.page_size, n_keys)

    def selects_some(self, n_keys: int, plain_causal: bool) -> bool:
        return effective_size(self.heavy_size, n_keys) >= 1

    def bounds(self, inputs: MaskInputs) -> torch.Tensor:
        """Page bounds of every page: complete pages cached in the state, the last one fresh."""
        size, n_keys = self.page_size, inputs.n_keys
        complete = n_keys // size

        def compute(start: int, stop: int) -> torch.Tensor:
            keys = inputs.keys[:, :, start * size : stop * size]
            return page_bounds(keys, size, self.label_bits)

        cache_name = f"quest_pages_{size}_{self.label_bits}"
        batch, kv_heads, _, dim = inputs.keys.shape
        block = inputs.key_block(batch * kv_heads * dim * 4 * 4) // size
        cached = inputs.state.prefix(
            inputs.layer_idx, cache_name, complete, compute, size, block_rows=block
        )
        if complete * size == n_keys:
            return cached
        tail = page_bounds(inputs.keys[:, :, complete * size :], size, self.label_bits)
        return torch.cat([cached, tail], dim=-2)

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(heavy_size=8, page_size=4)

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        return cls(heavy_size=1.0, page_size=4)

    def short_name(self) -> str:
        return f"quest{format_budget(self.heavy_size)}p{self.page_size}"
