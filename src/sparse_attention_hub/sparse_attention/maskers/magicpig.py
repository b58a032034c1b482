"""`magicpig`: LSH sampling with known inclusion probabilities (§6.10).

*Paper*: MagicPIG, Chen et al., ICLR 2025 — SimHash tables over centred keys, K = 10 bits,
L = 150 tables, selection by >= 2 colliding tables, output by importance weighting (1 / p).
Our default `transform: mips` (simple-LSH, Neyshabur & Srebro 2015) makes collisions track q . k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import model_validator

from sparse_attention_hub.sparse_attention.budget import PositiveInt
from sparse_attention_hub.sparse_attention.mask import candidates, union
from sparse_attention_hub.sparse_attention.maskers.base import MASKERS, MaskerConfig, MaskInputs

_MAX_CHUNK = 1 << 24  # elements per collision-comparison chunk
_MIN_PROBABILITY = 1e-4


@dataclass(frozen=True)
class KeyCodes:
    """Hash codes of keys [0, n) of one layer, `(batch, kv_heads, n, width)`, plus M_norm."""

    codes: torch.Tensor
    m_norm: torch.Tensor | None  # (batch, kv_heads, 1, 1) for `mips`

    def crop(self, length: int) -> KeyCodes | None:
        if length >= self.codes.shape[-2]:
            return self
        return KeyCodes(self.codes[..., :length, :], self.m_norm) if length > 0 else None


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
    return (signs * powers).sum(dim=-1)


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
        if inputs.n_keys == 0 or not bool(eligible.any()):
            return previous.clone()
        mean = self.context_mean(inputs)
        shifted = inputs.keys - mean if mean is not None else inputs.keys
        planes = self.planes(inputs)
        key_codes = self.key_codes(inputs, shifted, planes)
        queries = inputs.queries
        query_codes = hash_codes(queries, planes[: queries.shape[-1]], self.lsh_k, self.packed)
        matches = self.count_matches(query_codes, inputs.per_query_head(key_codes.codes))
        selected = eligible & (matches >= self.min_table_matches)

        q_dot = inputs.scores
        if mean is not None:  # q . (k - mu) = q . k - q . mu
            q_dot = q_dot - queries @ inputs.per_query_head(mean).transpose(-1, -2)
        q_norm = queries.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        if key_codes.m_norm is not None:
            k_norm = inputs.per_query_head(key_codes.m_norm)
        else:
            k_norm = inputs.per_query_head(shifted.norm(dim=-1)).unsqueeze(2)
        cosine = q_dot / (q_norm * k_norm.clamp_min(1e-30))
        probability = collision_probability(cosine, self.lsh_k, self.lsh_l, self.min_table_matches)
        probability = probability.float().clamp_min(_MIN_PROBABILITY)
        if bool(selected.any()):
            inputs.metrics["magicpig_mean_p"] = float(probability[selected].mean())
        return union(previous, probability * selected)

    @property
    def packed(self) -> bool:
        return self.packing == "int64"

    def context_mean(self, inputs: MaskInputs) -> torch.Tensor | None:
        """mu over the context keys: the keys before this layer's first sparse call's queries."""
        if not self.center:
            return None
        cache = inputs.state.layer(inputs.layer_idx)
        entry = cache.get("magicpig_mean")
        if not isinstance(entry, ContextMean) or entry.length > inputs.n_keys:
            length = inputs.n_keys - inputs.n_queries or inputs.n_keys
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
        self, inputs: MaskInputs, shifted: torch.Tensor, planes: torch.Tensor
    ) -> KeyCodes:
        """Codes of all keys, extending the cached ones; all recomputed when M_norm changes."""
        cache = inputs.state.layer(inputs.layer_idx)
        name = f"magicpig_codes_{self.transform}_{self.packing}_{planes.shape[-1]}"
        entry = cache.get(name)
        n_keys = inputs.n_keys
        m_norm = None
        if self.transform == "mips":
            m_norm = shifted.norm(dim=-1, keepdim=True).amax(dim=-2, keepdim=True).clamp_min(1e-30)
            if isinstance(entry, KeyCodes) and entry.m_norm is not None:
                same = torch.isclose(entry.m_norm, m_norm, rtol=1e-6, atol=0.0).all()
                m_norm = entry.m_norm if bool(same) else m_norm
                entry = entry if bool(same) else None
        if not isinstance(entry, KeyCodes) or entry.codes.shape[-2] > n_keys:
            entry = None
        done = entry.codes.shape[-2] if entry is not None else 0
        if entry is None or done < n_keys:
            new_keys = shifted[:, :, done:]
            if m_norm is not None:
                scaled = new_keys / m_norm
                extra = (1.0 - scaled.pow(2).sum(dim=-1, keepdim=True)).clamp_min(0.0).sqrt()
                new_keys = torch.cat([scaled, extra], dim=-1)
            new = hash_codes(new_keys, planes, self.lsh_k, self.packed)
            codes = new if entry is None else torch.cat([entry.codes, new], dim=-2)
            entry = KeyCodes(codes, m_norm)
            cache[name] = entry
        return entry

    def count_matches(self, query_codes: torch.Tensor, key_codes: torch.Tensor) -> torch.Tensor:
        """Number of tables where query i and key j collide, `(batch, heads, q_len, k_len)`."""
        bits = 1 if self.packed else self.lsh_k
        q = query_codes.view(*query_codes.shape[:-1], self.lsh_l, bits)
        k = key_codes.view(*key_codes.shape[:-1], self.lsh_l, bits)
        batch, heads, q_len, _, _ = q.shape
        k_len = k.shape[2]
        counts = torch.zeros(batch, heads, q_len, k_len, dtype=torch.int32, device=q.device)
        chunk = max(1, _MAX_CHUNK // max(1, batch * heads * q_len * k_len * bits))
        for start in range(0, self.lsh_l, chunk):
            stop = min(start + chunk, self.lsh_l)
            equal = q[:, :, :, None, start:stop] == k[:, :, None, :, start:stop]
            counts += equal.all(dim=-1).sum(dim=-1, dtype=torch.int32)
        return counts

    def short_name(self) -> str:
        name = f"magicpig_l{self.lsh_l}k{self.lsh_k}"
        return name if self.min_table_matches == 1 else f"{name}m2"
