"""`oracle_topp`: the fewest keys whose dense mass reaches `top_p` (docs/methods.md §6.4).

Mass is always measured against the whole row's dense softmax, counting what earlier maskers
already selected, so the final mask covers at least `top_p` of the dense attention mass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from sparse_attention_hub.sparse_attention.budget import Fraction
from sparse_attention_hub.sparse_attention.mask import candidates, union
from sparse_attention_hub.sparse_attention.maskers.base import (
    MASKERS,
    MaskerConfig,
    MaskInputs,
    format_budget,
)


@MASKERS.register("oracle_topp")
class OracleTopPConfig(MaskerConfig):
    """Adds the highest-probability candidates until covered mass >= `top_p` (ties included)."""

    type: Literal["oracle_topp"] = "oracle_topp"
    top_p: Fraction

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        eligible = candidates(inputs.allowed, previous)
        if self.top_p >= 1.0:
            return union(previous, eligible)
        logits = inputs.logits
        has_allowed = inputs.allowed.any(dim=-1, keepdim=True)
        probs = torch.softmax(logits.masked_fill(~has_allowed, 0.0), dim=-1)
        probs = probs.masked_fill(~inputs.allowed, 0.0)
        covered = (probs * ((previous > 0) & inputs.allowed)).sum(dim=-1, keepdim=True)
        ranked, order = probs.masked_fill(~eligible, -1.0).sort(
            dim=-1, descending=True, stable=True
        )
        mass_before = covered + ranked.clamp_min(0.0).cumsum(dim=-1) - ranked.clamp_min(0.0)
        take_sorted = (ranked >= 0) & (mass_before < self.top_p)
        # The last taken probability; candidates tied with it are taken as well.
        last = ranked.masked_fill(~take_sorted, float("inf")).amin(dim=-1, keepdim=True)
        take = torch.zeros_like(eligible).scatter(-1, order, take_sorted)
        tied = eligible & (probs == last) & take_sorted.any(dim=-1, keepdim=True)
        return union(previous, take | tied)

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(top_p=0.5)

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        return cls(top_p=1.0)

    def short_name(self) -> str:
        return f"topp{format_budget(self.top_p)}"
