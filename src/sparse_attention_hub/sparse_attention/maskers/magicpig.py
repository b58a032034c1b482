"""`magicpig`: LSH sampling with known inclusion probabilities (docs/methods.md §6.10).

*Paper*: MagicPIG, Chen et al., ICLR 2025 — SimHash tables over centred keys, K = 10 bits,
L = 150 tables, selection by >= 2 colliding tables, output by importance weighting (1 / p).
Our default `transform: mips` (simple-LSH, Neyshabur & Srebro 2015) makes collisions track q . k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import model_validator

from sparse_attention_hub.sparse_attention.budget import PositiveInt
from sparse_attention_hub.sparse_attention.mask import candidates, union
from sparse_attention_hub.sparse_attention.maskers.base import MASKERS, MaskerConfig, MaskInputs

_MAX_CHUNK = 1 << 24  # elements per collision-comparison chunk
_MIN_PROBABILITY = 1e-4
_KEY_DERIVED = ("magicpig_norms_", "magicpig_mnorm_", "magicpig_codes_")  # depend on mu


@dataclass(frozen=True)
class ContextMean:
    """Mean of the context keys (keys [0, length)), `(batch, kv_heads, 1, dim)`."""

    mean: torch.Tensor
    length: int

    def crop(self, length: int) -> ContextMean | None:
        return self if length >= self.length else None


def collision_probability(
    cosine: torch.Tensor, bits: int, tables: int, matches: int
) -> torch.Tensor:
    """P(>= `matches` of `tables` tables collide) for SimHash with `bits` bits per table (float64)."""
    theta = torch.arccos(cosine.double().clamp(-1.0, 1.0))
    per_table = (1.0 - theta / math.pi) ** bits
    miss_all = torch.exp(tables * torch.log1p(-per_table.clamp(max=1.0 - 1e-16)))
    miss_all = torch.where(per_table >= 1.0, 0.0, miss_all)
    if matches == 1:
        return 1.0 - miss_all
    one = (
        tables
        * per_table
        * torch.exp((tables - 1) * torch.log1p(-per_table.clamp(max=1.0 - 1e-16)))
    )
    one = torch.where(per_table >= 1.0, 0.0, one)
    return (1.0 - miss_all - one).clamp_min(0.0)


def hash_codes(x: torch.Tensor, planes: torch.Tensor, bits: int, packed: bool) -> torch.Tensor:
    """SimHash codes of `x` `(..., d)`: `(..., tables)` int64 when packed, else `(..., tables*bits)` bool."""
    signs = (x @ planes) > 0
    if not packed:
        return signs
    signs = signs.view(*signs.shape[:-1], -1, bits).long()
    powers = 2 ** torch.arange(bits, device=x.device, dtype=torch.long)
    codes = (signs * powers).sum(dim=-1)
    # the int64 codes stored in the narrowest integer type that holds `bits` bits (faster compares)
    return codes.to(torch.int16 if bits <= 15 else torch.int32 if bits <= 31 else torch.int64)


@MASKERS.register("magicpig")
class MagicPigConfig(MaskerConfig):
    """Candidates colliding with the query in >= `min_table_matches` of `lsh_l` tables; value p."""

    kind: ClassVar[Literal["fixed", "sampling"]] = "sampling"
    type: Literal["magicpig"] = "magicpig"
    lsh_l: PositiveInt
    lsh_k: PositiveInt
    center: bool = True
    transform: Literal["mips", "none"] = "mips"
    min_table_matches: Literal[1, 2] = 1
    packing: Literal["int64", "none"] = "int64"

    @model_validator(mode="after")
    def _check(self) -> MagicPigConfig:
        problems = []
        if self.packing == "int64" and self.lsh_k > 63:
            problems.append(f"packing 'int64' needs lsh_k <= 63, got {self.lsh_k} (use 'none')")
        if self.min_table_matches > self.lsh_l:
            problems.append(f"min_table_matches {self.min_table_matches} > lsh_l {self.lsh_l}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        eligible = candidates(inputs.allowed, previous)
        if inputs.n_keys == 0:
            return previous.clone()
        mean = self.context_mean(inputs)
        planes = self.planes(inputs)
        key_codes, key_norms = self.key_codes(inputs, mean, planes)
        queries = inputs.queries
        query_codes = hash_codes(queries, planes[: queries.shape[-1]], self.lsh_k, self.packed)
        matches = self.count_matches(query_codes, key_codes)
        selected = eligible & (matches >= self.min_table_matches)

        q_dot = inputs.scores
        if mean is not None:  # q . (k - mu) = q . k - q . mu
            q_dot = q_dot - queries @ inputs.per_query_head(mean).transpose(-1, -2)
        q_norm = queries.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        # mips: cos(q~, k~) = q . k' / (|q| M_norm); none: cos(q, k')
        k_norm = inputs.per_query_head(key_norms).transpose(-1, -2)
        cosine = q_dot / (q_norm * k_norm.clamp_min(1e-30))
        probability = collision_probability(cosine, self.lsh_k, self.lsh_l, self.min_table_matches)
        probability = probability.float().clamp_min(_MIN_PROBABILITY)
        inputs.add_metric("magicpig_mean_p", (probability * selected).sum(), selected.sum())
        return union(previous, probability * selected)

    @property
    def packed(self) -> bool:
        return self.packing == "int64"

    def context_mean(self, inputs: MaskInputs) -> torch.Tensor | None:
        """mu over the context keys: the keys before this layer's first sparse call's queries.

        A new mu invalidates every key norm and code hashed with the old one (they are dropped).
        """
        if not self.center:
            return None
        cache = inputs.state.layer(inputs.layer_idx)
        entry = cache.get("magicpig_mean")
        if not isinstance(entry, ContextMean) or entry.length > inputs.n_keys:
            for name in [name for name in cache if name.startswith(_KEY_DERIVED)]:
                del cache[name]
            length = inputs.scope.context_length or inputs.n_keys
            entry = ContextMean(inputs.keys[:, :, :length].mean(dim=2, keepdim=True), length)
            cache["magicpig_mean"] = entry
        return entry.mean

    def planes(self, inputs: MaskInputs) -> torch.Tensor:
        """Gaussian hyperplanes `(dim [+1], K * L)`, drawn on CPU from seed + layer."""
        dim = inputs.keys.shape[-1] + (1 if self.transform == "mips" else 0)
        name = f"magicpig_planes_{inputs.seed}_{dim}_{self.lsh_k}_{self.lsh_l}"
        cache = inputs.state.layer(inputs.layer_idx)
        if name not in cache:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(inputs.seed + inputs.layer_idx)
            planes = torch.randn(dim, self.lsh_k * self.lsh_l, generator=generator)
            cache[name] = planes.to(inputs.keys.device)
        planes_tensor: torch.Tensor = cache[name]
        return planes_tensor

    def key_codes(
        self, inputs: MaskInputs, mean: torch.Tensor | None, planes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes `(batch, kv_heads, k_len, width)` and norms ||k - mu|| `(batch, kv_heads,
        k_len, 1)` of all keys, cached and extended key by key.

        With `mips` the codes depend on M_norm = max norm over the current keys, per (batch, KV
        head); when it differs from the one the cached codes were hashed with, all are recomputed.
        """
        cache = inputs.state.layer(inputs.layer_idx)
        suffix = f"{self.center}_{self.transform}_{self.lsh_k}_{self.lsh_l}_{inputs.seed}"
        codes_name = f"magicpig_codes_{suffix}_{self.packing}"
        norm_name = f"magicpig_mnorm_{suffix}"

        def shifted(start: int, stop: int) -> torch.Tensor:
            keys = inputs.keys[:, :, start:stop]
            return keys - mean if mean is not None else keys

        def norms_of(start: int, stop: int) -> torch.Tensor:
            return shifted(start, stop).norm(dim=-1, keepdim=True)

        norms = inputs.state.prefix(
            inputs.layer_idx, f"magicpig_norms_{self.center}", inputs.n_keys, norms_of
        )
        m_norm = None
        if self.transform == "mips":
            m_norm = norms.amax(dim=-2, keepdim=True).clamp_min(1e-30)
            stored = cache.get(norm_name)
            if not (isinstance(stored, torch.Tensor) and torch.equal(stored, m_norm)):
                cache.pop(codes_name, None)
                cache[norm_name] = m_norm

        def compute(start: int, stop: int) -> torch.Tensor:
            keys = shifted(start, stop)
            if m_norm is not None:
                keys = keys / m_norm
                extra = (1.0 - keys.pow(2).sum(dim=-1, keepdim=True)).clamp_min(0.0).sqrt()
                keys = torch.cat([keys, extra], dim=-1)
            return hash_codes(keys, planes, self.lsh_k, self.packed)

        batch, kv_heads, _, dim = inputs.keys.shape
        block = inputs.key_block(batch * kv_heads * (self.lsh_k * self.lsh_l * 16 + dim * 8))
        codes = inputs.state.prefix(
            inputs.layer_idx, codes_name, inputs.n_keys, compute, block_rows=block
        )
        return codes, norms if m_norm is None else m_norm

    def count_matches(self, query_codes: torch.Tensor, key_codes: torch.Tensor) -> torch.Tensor:
        """Tables where query i and key j collide, `(batch, heads, q_len, k_len)`.

        query_codes `(batch, heads, q_len, width)`; key_codes `(batch, kv_heads, k_len, width)`:
        the g query heads of a KV head are stacked as rows, so key codes are never repeated.
        """
        bits = 1 if self.packed else self.lsh_k
        batch, heads, q_len, _ = query_codes.shape
        kv_heads, k_len = key_codes.shape[1], key_codes.shape[2]
        rows = heads // kv_heads * q_len
        q = query_codes.reshape(batch, kv_heads, rows, 1, self.lsh_l, bits)
        k = key_codes.unflatten(-1, (self.lsh_l, bits)).unsqueeze(2)  # a view: no copy
        dtype = torch.int16 if self.lsh_l < 2**15 else torch.int32
        counts = torch.zeros(batch, kv_heads, rows, k_len, dtype=dtype, device=q.device)
        chunk = max(1, _MAX_CHUNK // max(1, batch * heads * q_len * k_len * bits))
        for start in range(0, self.lsh_l, chunk):
            stop = min(start + chunk, self.lsh_l)
            equal = q[..., start:stop, :] == k[..., start:stop, :]
            counts += (equal.all(dim=-1) if bits > 1 else equal[..., 0]).sum(-1, dtype=dtype)
        return counts.view(batch, heads, q_len, k_len)

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(lsh_l=8, lsh_k=2)

    def short_name(self) -> str:
        name = f"magicpig_l{self.lsh_l}k{self.lsh_k}"
        return name if self.min_table_matches == 1 else f"{name}m2"
