"""`sink`: the first keys of the sequence (docs/methods.md §6.1).

*Paper*: StreamingLLM, Xiao et al., ICLR 2024.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from sparse_attention_hub.sparse_attention.budget import Budget, effective_size
from sparse_attention_hub.sparse_attention.maskers.base import (
    MASKERS,
    MaskerConfig,
    MaskInputs,
    add_selected,
    format_budget,
)


@MASKERS.register("sink")
class SinkMaskerConfig(MaskerConfig):
    """Keys [0, s) for every row, s = effective `sink_size` (StreamingLLM keeps 4)."""

    type: Literal["sink"] = "sink"
    sink_size: Budget

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        size = effective_size(self.sink_size, inputs.n_keys)
        if inputs.every_allowed:
            return inputs.add_columns(previous, 0, size)
        columns = torch.arange(inputs.n_keys, device=previous.device)
        return add_selected(previous, inputs.allowed & (columns < size))

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(sink_size=2)

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        return cls(sink_size=1.0)

    def key_bound(self, n_keys: int) -> int:
        return min(effective_size(self.sink_size, n_keys), n_keys)

    def key_columns(self, n_keys: int, first: int, last: int) -> tuple[int, int]:
        return 0, min(effective_size(self.sink_size, n_keys), n_keys)

    def selects_some(self, n_keys: int, plain_causal: bool) -> bool:
        return plain_causal and effective_size(self.sink_size, n_keys) >= 1  # key 0

    def short_name(self) -> str:
        return f"sink{format_budget(self.sink_size)}"
