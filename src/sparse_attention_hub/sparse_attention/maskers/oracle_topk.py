"""`oracle_topk`: the exact top-k keys by q . k among the candidates (docs/methods.md §6.3).

Uses the true keys, so it upper-bounds approximate top-k methods (Quest, HashAttention, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from sparse_attention_hub.sparse_attention.budget import Budget, effective_size
from sparse_attention_hub.sparse_attention.mask import topk_select
from sparse_attention_hub.sparse_attention.maskers.base import (
    MASKERS,
    MaskerConfig,
    MaskInputs,
    add_selected,
    format_budget,
)


@MASKERS.register("oracle_topk")
class OracleTopKConfig(MaskerConfig):
    """Adds the k = effective `heavy_size` highest q . k candidates of every row."""

    type: Literal["oracle_topk"] = "oracle_topk"
    heavy_size: Budget

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        k = effective_size(self.heavy_size, inputs.n_keys)
        eligible = inputs.candidates(previous)
        return add_selected(previous, topk_select(inputs.scores, eligible, k))

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(heavy_size=0.25)

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        return cls(heavy_size=1.0)

    def key_bound(self, n_keys: int) -> int:
        return min(effective_size(self.heavy_size, n_keys), n_keys)

    def selects_some(self, n_keys: int, plain_causal: bool) -> bool:
        return effective_size(self.heavy_size, n_keys) >= 1

    def short_name(self) -> str:
        return f"topk{format_budget(self.heavy_size)}"
