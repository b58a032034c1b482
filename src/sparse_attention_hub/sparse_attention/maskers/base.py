"""What every masker shares: the config base class, the per-call inputs and the registry.

A masker is one frozen pydantic config with a `type` literal plus one method,
`add_mask(inputs, previous) -> mask`: `previous` is the mask built so far, float32
`(batch, heads, q_len, k_len)` in [0, 1]; the result is the union `clamp(previous + new, 0, 1)`
(built with `mask.union`), never an in-place edit of `previous` (§4). Sampling maskers write each
sampled key's inclusion probability; deterministic ones write 1. The registry key, the YAML `type`
and the module file stem are the same word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict

from sparse_attention_hub.registry import Registry
from sparse_attention_hub.sparse_attention.attention import allowed_entries, attention_logits
from sparse_attention_hub.sparse_attention.state import SparseState


@dataclass(frozen=True)
class MaskInputs:
    """Everything a masker may read during one attention call (all tensors float32).

    queries `(batch, heads, q_len, head_dim)`; keys / values `(batch, kv_heads, k_len, head_dim)`,
    not repeated for GQA (query head h reads KV head h // groups); `allowed` `(batch, heads, q_len,
    k_len)` bool, True where the model's mask lets query i see key j; `bias` the model's finite
    additive mask or None. `metrics` collects per-call numbers a masker wants logged (§8).
    """

    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    allowed: torch.Tensor
    bias: torch.Tensor | None
    scaling: float
    layer_idx: int
    state: SparseState
    seed: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float,
        *,
        layer_idx: int,
        state: SparseState,
        seed: int = 0,
    ) -> MaskInputs:
        """Float32 inputs of one call from what transformers passes an attention function."""
        batch, heads, q_len, _ = query.shape
        k_len = key.shape[2]
        allowed, bias = allowed_entries(attention_mask, q_len, k_len, query.device)
        return cls(
            queries=query.float(),
            keys=key.float(),
            values=value.float(),
            allowed=allowed.expand(batch, heads, q_len, k_len),
            bias=bias,
            scaling=scaling,
            layer_idx=layer_idx,
            state=state,
            seed=seed,
        )

    @property
    def n_queries(self) -> int:
        return int(self.queries.shape[2])

    @property
    def n_keys(self) -> int:
        return int(self.keys.shape[2])

    @property
    def groups(self) -> int:
        return int(self.queries.shape[1] // self.keys.shape[1])

    @cached_property
    def scores(self) -> torch.Tensor:
        """q . k for every (query head, key), `(batch, heads, q_len, k_len)`, float32."""
        return attention_logits(self.queries, self.keys, 1.0)

    @cached_property
    def logits(self) -> torch.Tensor:
        """Model logits s_ij = scale * q.k + a_ij; -inf on disallowed entries."""
        logits = self.scores * self.scaling
        if self.bias is not None:
            logits = logits + self.bias
        return logits.masked_fill(~self.allowed, float("-inf"))

    def per_query_head(self, kv_tensor: torch.Tensor) -> torch.Tensor:
        """Repeat a `(batch, kv_heads, ...)` tensor to `(batch, heads, ...)` (head h <- h // g)."""
        groups = self.groups
        return kv_tensor.repeat_interleave(groups, dim=1) if groups > 1 else kv_tensor

    def generator(self) -> torch.Generator:
        """The seeded CPU generator of this call (§6.12); a masker draws from one generator."""
        return self.state.generator(self.layer_idx, self.seed)


class MaskerConfig(BaseModel):
    """Base of every masker config: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[Literal["fixed", "sampling"]] = "fixed"
    """`sampling` maskers write probabilities; at most one, and it must come last."""

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        """Return `clamp(previous + this masker's selection, 0, 1)`, `(batch, heads, q, k)`."""
        raise NotImplementedError

    def short_name(self) -> str:
        """A few characters for readable config names, e.g. `sink4`."""
        raise NotImplementedError

    def referenced_files(self) -> list[str]:
        """Files whose content the config depends on (hashed into the fingerprint)."""
        return []

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        """A typical config for a model with `heads` query heads of `head_dim`.

        The registry's generic tests and docs walk these, so a new masker is covered the day it
        is added. Maskers that read a file write a random one into `workdir`.
        """
        raise NotImplementedError(f"{cls.__name__} gives no example config")

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        """A config that keeps every key with probability 1 (must equal dense attention), or
        None where the method has no such setting (MagicPIG's inclusion probabilities are < 1)."""
        return None


MASKERS: Registry[type[MaskerConfig]] = Registry("masker")
"""Masker type -> config class; every module in `maskers/` registers itself under its stem."""


def format_budget(value: int | float) -> str:
    """`4` -> "4", `0.1` -> "0.1" (no trailing zeros), for readable names."""
    return str(value) if isinstance(value, int) else f"{value:g}"
