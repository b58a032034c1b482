"""`random_sampling`: uniform sampling of the residual keys without replacement
(docs/methods.md §6.8).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import torch

from sparse_attention_hub.sparse_attention.bools import count_last, to_float
from sparse_attention_hub.sparse_attention.budget import Fraction, effective_size
from sparse_attention_hub.sparse_attention.mask import sample_select, union
from sparse_attention_hub.sparse_attention.maskers.base import (
    MASKERS,
    MaskerConfig,
    MaskInputs,
    format_budget,
)


@MASKERS.register("random_sampling")
class RandomSamplingConfig(MaskerConfig):
    """Row i draws r_i = min(|R_i|, floor(rate * N)) candidates; each gets value r_i / |R_i|."""

    kind: ClassVar[Literal["fixed", "sampling"]] = "sampling"
    type: Literal["random_sampling"] = "random_sampling"
    sampling_rate: Fraction

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        eligible = inputs.candidates(previous)
        available = count_last(eligible)
        wanted = effective_size(self.sampling_rate, inputs.n_keys)
        counts = available.clamp(max=wanted)
        if wanted == 0:
            return previous.clone()
        chosen = sample_select(eligible, counts, inputs.uniform(), wanted)
        probability = counts.float() / available.clamp_min(1).float()
        return union(previous, to_float(chosen).mul_(probability.unsqueeze(-1)))

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(sampling_rate=0.3)

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        return cls(sampling_rate=1.0)

    def key_bound(self, n_keys: int) -> int:
        return min(effective_size(self.sampling_rate, n_keys), n_keys)

    def selects_some(self, n_keys: int, plain_causal: bool) -> bool:
        return effective_size(self.sampling_rate, n_keys) >= 1

    def short_name(self) -> str:
        return f"rand{format_budget(self.sampling_rate)}"
