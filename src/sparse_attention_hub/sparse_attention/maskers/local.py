"""`local`: a sliding window of recent keys (docs/methods.md §6.2).

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


@MASKERS.register("local")
class LocalMaskerConfig(MaskerConfig):
    """Row i gets keys [t_i - w + 1, t_i]: the w most recent positions including its own.

    Causality stays the model's job (`allowed`); the window only adds entries.
    """

    type: Literal["local"] = "local"
    window_size: Budget

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        width = effective_size(self.window_size, inputs.n_keys)
        if inputs.every_allowed:  # one row (a decode step): its window is one column range
            position = inputs.scope.context_length + inputs.row_start
            return inputs.add_columns(previous, position - width + 1, position + 1)
        device = previous.device
        rows = inputs.positions[:, None]
        columns = torch.arange(inputs.n_keys, device=device)[None, :]
        window = (columns <= rows) & (columns > rows - width)
        return add_selected(previous, inputs.allowed & window)

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(window_size=3)

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        return cls(window_size=1.0)

    def key_bound(self, n_keys: int) -> int:
        return min(effective_size(self.window_size, n_keys), n_keys)

    def key_columns(self, n_keys: int, first: int, last: int) -> tuple[int, int]:
        width = effective_size(self.window_size, n_keys)
        return max(0, first - width + 1), min(n_keys, last + 1)

    def selects_some(self, n_keys: int, plain_causal: bool) -> bool:
        return plain_causal and effective_size(self.window_size, n_keys) >= 1  # its own position

    def short_name(self) -> str:
        return f"local{format_budget(self.window_size)}"
