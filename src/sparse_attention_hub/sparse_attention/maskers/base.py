"""What every masker shares: the config base class, the per-call inputs and the registry.

A masker is one frozen pydantic config with a `type` literal plus one method,
`add_mask(inputs, previous) -> mask`: `previous` is the mask built so far, float32
`(B, H, Q, N)` in [0, 1]; the result is the union `clamp(previous + new, 0, 1)`
(built with `mask.union`), never an in-place edit of `previous` (docs/methods.md §4). Sampling
maskers write each sampled key's inclusion probability; deterministic ones write 1. The registry
key, the YAML `type` and the module file stem are the same word.
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
from sparse_attention_hub.sparse_attention.bools import neg_inf_unless, set_where, unset
from sparse_attention_hub.sparse_attention.call import CHUNK_SHARE, CallScope
from sparse_attention_hub.sparse_attention.mask import candidates
from sparse_attention_hub.sparse_attention.state import SparseState


@dataclass(frozen=True)
class MaskInputs:
    """Everything a masker may read while building the mask of one query chunk (float32).

    queries `(B, H, Q, D)`: rows [row_start, row_start + q_len) of the call's
    queries; keys / values `(B, H_kv, N, D)`, the whole KV cache, not repeated
    for GQA (query head h reads KV head h // groups); `allowed` `(B, H, Q, N)` bool,
    True where the model's mask lets query i see key j; `bias` the model's finite additive mask or
    None. What a masker computes from keys alone belongs in `scope.cache` (once per call) or the
    state (across calls), never per chunk. `metrics` collects per-call numbers a masker wants
    logged (docs/methods.md §8), as (sum, count) device tensors added over the chunks.
    """

    scope: CallScope
    queries: torch.Tensor
    allowed: torch.Tensor
    bias: torch.Tensor | None
    scaling: float
    row_start: int = 0
    every_allowed: bool = False
    """Every entry of `allowed` is True: one row (a decode step) under a plain causal mask at or
    past the last key, so masking by it changes nothing and is skipped."""
    metrics: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

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
        """The inputs of a whole call as one chunk, from what transformers passes."""
        scope = CallScope(query, key, value, layer_idx, state, seed)
        return cls.chunk(scope, attention_mask, scaling, 0, scope.q_len)

    @classmethod
    def chunk(
        cls,
        scope: CallScope,
        attention_mask: torch.Tensor | None,
        scaling: float,
        start: int,
        stop: int,
    ) -> MaskInputs:
        """Query rows [start, stop) of the call in `scope`."""
        query = scope.query[:, :, start:stop]
        batch, heads, q_len, _ = query.shape
        if attention_mask is not None and attention_mask.shape[-2] == scope.q_len:
            attention_mask = attention_mask[..., start:stop, :]
        allowed, bias = allowed_entries(
            attention_mask, q_len, scope.k_len, query.device, scope.context_length + start
        )
        return cls(
            scope=scope,
            queries=query.float(),
            allowed=allowed.expand(batch, heads, q_len, scope.k_len),
            bias=bias,
            scaling=scaling,
            row_start=start,
            every_allowed=attention_mask is None
            and q_len == 1
            and scope.context_length + start >= scope.k_len - 1,
        )

    @property
    def keys(self) -> torch.Tensor:
        return self.scope.keys

    @property
    def values(self) -> torch.Tensor:
        return self.scope.values

    @property
    def layer_idx(self) -> int:
        return self.scope.layer_idx

    @property
    def state(self) -> SparseState:
        return self.scope.state

    @property
    def seed(self) -> int:
        return self.scope.seed

    @property
    def n_queries(self) -> int:
        return int(self.queries.shape[2])

    @property
    def n_keys(self) -> int:
        return self.scope.k_len

    @property
    def groups(self) -> int:
        return int(self.queries.shape[1] // self.scope.key.shape[1])

    @property
    def positions(self) -> torch.Tensor:
        """Absolute position of every query row of the chunk, `(q_len,)`."""
        first = self.scope.context_length + self.row_start
        return torch.arange(self.n_queries, device=self.queries.device) + first

    @cached_property
    def scores(self) -> torch.Tensor:
        """q . k for every (query head, key), `(B, H, Q, N)`, float32."""
        return attention_logits(self.queries, self.keys, 1.0)

    @cached_property
    def logits(self) -> torch.Tensor:
        """Model logits s_ij = scale * q.k + a_ij; -inf on disallowed entries."""
        logits = self.scores * self.scaling
        if self.bias is not None:
            logits = logits + self.bias
        return logits if self.every_allowed else neg_inf_unless(logits, self.allowed)

    def candidates(self, previous: torch.Tensor) -> torch.Tensor:
        """`mask.candidates(allowed, previous)`, a new bool tensor."""
        return unset(previous) if self.every_allowed else candidates(self.allowed, previous)

    def add_columns(self, previous: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """`add_selected(previous, allowed & (start <= column < stop))` where every entry is
        allowed (`every_allowed`): a copy with those columns set to 1, no row-sized selection."""
        if not self.every_allowed:
            raise ValueError("add_columns needs every entry allowed (a decode step)")
        mask = previous.clone()
        mask[..., max(0, start) : max(0, stop)] = 1.0
        return mask

    def known_scores(self) -> torch.Tensor | None:
        """`scores` if a masker already computed them for this chunk, else None (never computes)."""
        scores: torch.Tensor | None = self.__dict__.get("scores")
        return scores

    def per_query_head(self, kv_tensor: torch.Tensor) -> torch.Tensor:
        """Repeat a `(B, H_kv, ...)` tensor to `(B, H, ...)` (head h <- h // g)."""
        groups = self.groups
        return kv_tensor.repeat_interleave(groups, dim=1) if groups > 1 else kv_tensor

    def key_block(self, bytes_per_key: int) -> int:
        """Keys per block for key-side work costing `bytes_per_key` (all batches and heads): it
        runs beside a query chunk's working set, so it gets the share of the budget that the
        chunks leave (docs/methods.md §5.1)."""
        share = int(self.scope.memory_bytes * (1 - CHUNK_SHARE))
        return max(1, share // max(1, bytes_per_key))

    def uniform(self, draw: int = 0) -> torch.Tensor:
        """This chunk's rows of the call's random draw `draw`, float64 `(B, H, Q, N)`."""
        stop = self.row_start + self.n_queries
        return self.scope.uniform(draw, self.row_start, stop, self.queries.device)

    def add_metric(self, name: str, total: torch.Tensor, count: torch.Tensor) -> None:
        """Log `total / count` for this call (summed over chunks; not logged when count is 0)."""
        if name in self.metrics:
            old_total, old_count = self.metrics[name]
            total, count = old_total + total, old_count + count
        self.metrics[name] = (total, count)


class MaskerConfig(BaseModel):
    """Base of every masker config: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[Literal["fixed", "sampling"]] = "fixed"
    """`sampling` maskers write probabilities; at most one, and it must come last."""

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        """Return `clamp(previous + this masker's selection, 0, 1)`, `(B, H, Q, N)`."""
        raise NotImplementedError

    def short_name(self) -> str:
        """A few characters for readable config names, e.g. `sink4`."""
        raise NotImplementedError

    def key_bound(self, n_keys: int) -> int | None:
        """Most keys this masker adds to any row of a call with `n_keys` keys; None = no bound
        known before the call (the attention then runs over whole rows)."""
        return None

    def key_columns(self, n_keys: int, first: int, last: int) -> tuple[int, int] | None:
        """Key columns [lo, hi) holding every key this masker may add to query rows at absolute
        positions first..last; None = anywhere (the attention then spans all N keys)."""
        return None

    def selects_some(self, n_keys: int, plain_causal: bool) -> bool:
        """True when, after this masker, every row with an allowed key has a selected one.

        `plain_causal`: the model passed no mask (query i sees keys up to its position). A
        config with such a masker never needs the dense fallback of an empty row.
        """
        return False

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


def add_selected(previous: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """`mask.union(previous, selected)` for a deterministic bool selection (p = 1), in one op:
    `previous` is in [0, 1], so clamp(previous + 1, 0, 1) is 1 on the selection (docs/methods.md §4)."""
    return set_where(previous, selected)


MASKERS: Registry[type[MaskerConfig]] = Registry("masker")
"""Masker type -> config class; every module in `maskers/` registers itself under its stem."""


def format_budget(value: int | float) -> str:
    """`4` -> "4", `0.1` -> "0.1" (no trailing zeros), for readable names."""
    return str(value) if isinstance(value, int) else f"{value:g}"
