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

from sparse_attention_hub.sparse_attention.bools import as_bytes, on_selected, to_float
from sparse_attention_hub.sparse_attention.budget import PositiveInt
from sparse_attention_hub.sparse_attention.mask import union
from sparse_attention_hub.sparse_attention.maskers.base import MASKERS, MaskerConfig, MaskInputs
from sparse_attention_hub.sparse_attention.maskers.lsh_index import (
    BUILD_BYTES,
    INDEX_SHARE,
    MAX_BITS,
    BucketIndex,
    KeyBits,
    bit_major,
    colliding,
    colliding_indexed,
    index_bytes,
)

_MIN_PROBABILITY = 1e-4
_KEY_DERIVED = ("magicpig_norms_", "magicpig_mnorm_", "magicpig_codes_")  # depend on mu


@dataclass(frozen=True)
class ContextMean:
    """Mean of the context keys (keys [0, length)), `(B, H_kv, 1, D)`."""

    mean: torch.Tensor
    length: int

    def crop(self, length: int) -> ContextMean | None:
        return self if length >= self.length else None


def collision_probability(
    cosine: torch.Tensor, bits: int, tables: int, matches: int
) -> torch.Tensor:
    """P(>= `matches` of `tables` tables collide) for SimHash with `bits` bits per table (float64).

    In-place steps (the float64 temporaries are the largest per-entry memory of this masker).
    """
    per_table = cosine.double().clamp_(-1.0, 1.0).arccos_().div_(math.pi).neg_().add_(1.0)
    per_table.pow_(bits)  # (1 - theta / pi) ** bits
    uncertain = to_float(per_table < 1.0, torch.float64)  # x * 0 = 0: every value is finite

    def log_miss() -> torch.Tensor:  # log(1 - P), P kept below 1
        return per_table.clamp(max=1.0 - 1e-16).neg_().log1p_()

    miss_all = log_miss().mul_(tables).exp_().mul_(uncertain)
    if matches == 1:
        return miss_all.neg_().add_(1.0)
    rest_miss = log_miss().mul_(tables - 1).exp_()  # (1 - P) ** (L - 1)
    one = per_table.mul_(tables).mul_(rest_miss).mul_(uncertain)  # L P (1 - P)^(L-1)
    del rest_miss
    return miss_all.neg_().add_(1.0).sub_(one).clamp_min_(0.0)


def hash_signs(x: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
    """SimHash bits of `x` `(..., d)`: `(..., tables * bits)` bool, table t owning bits
    [t * bits, (t + 1) * bits)."""
    return (x @ planes) > 0


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
    """How signatures were once stored; both values give the same masks (kept so written
    configs stay valid; the bits are always sliced 64 keys a word now)."""

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
        eligible = inputs.candidates(previous)
        if inputs.n_keys == 0:
            return previous.clone()
        mean = self.context_mean(inputs)
        planes = self.planes(inputs)
        key_bits, key_norms = self.key_bits(inputs, mean, planes)
        queries = inputs.queries
        batch, heads, q_len, _ = queries.shape
        kv_heads = key_bits.heads[1]
        signs = hash_signs(queries, planes[: queries.shape[-1]])
        signs = signs.reshape(batch, kv_heads, heads // kv_heads * q_len, -1)
        hits = self.collisions(inputs, signs, key_bits)
        hits = hits.reshape(batch, heads, q_len, inputs.n_keys)
        selected = eligible & hits

        q_dot = inputs.scores
        if mean is not None:  # q . (k - mu) = q . k - q . mu
            q_dot = q_dot - queries @ inputs.per_query_head(mean).transpose(-1, -2)
        q_norm = queries.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        # mips: cos(q~, k~) = q . k' / (|q| M_norm); none: cos(q, k')
        k_norm = inputs.per_query_head(key_norms).transpose(-1, -2)
        cosine = q_dot / (q_norm * k_norm.clamp_min(1e-30))
        del q_dot

        def probability(cosines: torch.Tensor) -> torch.Tensor:
            p = collision_probability(cosines, self.lsh_k, self.lsh_l, self.min_table_matches)
            return p.float().clamp_min_(_MIN_PROBABILITY)

        sampled = on_selected(cosine, selected, probability)  # 0 where not selected
        del cosine
        inputs.add_metric(
            "magicpig_mean_p", sampled.sum(), as_bytes(selected).sum(dtype=torch.int64)
        )
        return union(previous, sampled)

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

    def collisions(
        self, inputs: MaskInputs, signs: torch.Tensor, key_bits: KeyBits
    ) -> torch.Tensor:
        """Keys colliding with each row of `signs` `(B, H_kv, rows, tables * bits)` in >=
        `min_table_matches` tables, bool `(B, H_kv, rows, N)`. On CPU most keys are read from
        the bucket index (`colliding_indexed`, the same selection); elsewhere all are bit-sliced,
        which reads no data-dependent size back to the host."""
        budget = inputs.scope.memory_bytes // 16
        if key_bits.codes is None:  # not on CPU, codes too wide or too many (`_indexed`)
            hits = colliding(signs, key_bits.words(), self.lsh_k, self.min_table_matches, budget)
            return hits[..., : inputs.n_keys]
        index = self.bucket_index(inputs, key_bits)
        return colliding_indexed(signs, key_bits, index, self.lsh_k, self.min_table_matches, budget)

    def bucket_index(self, inputs: MaskInputs, key_bits: KeyBits) -> BucketIndex:
        """The layer's bucket index of the keys before the call (N - Q), cached: built when
        absent and rebuilt once the keys past it outnumber a quarter of it, so a decode step
        stays a few lookups and an index of a question's context survives the crop back to it
        (docs/methods.md §6.10)."""
        cache = inputs.state.layer(inputs.layer_idx)
        name = self._index_name(inputs)
        index = cache.get(name)
        length = min(inputs.scope.context_length, key_bits.length)
        if (
            not isinstance(index, BucketIndex)
            or index.length > key_bits.length
            or (length > index.length and (key_bits.length - index.length) * 4 > index.length)
        ):
            batch, kv_heads = key_bits.heads
            tables = inputs.key_block(batch * kv_heads * length * BUILD_BYTES)  # key-side work
            index = BucketIndex.build(key_bits, length, tables)
            cache[name] = index
        return index

    def _suffix(self, inputs: MaskInputs) -> str:
        return f"{self.center}_{self.transform}_{self.lsh_k}_{self.lsh_l}_{inputs.seed}"

    def _index_name(self, inputs: MaskInputs) -> str:
        # a `magicpig_codes_` name: dropped with the codes when mu changes (`_KEY_DERIVED`)
        return f"magicpig_codes_index_{self._suffix(inputs)}"

    def key_bits(
        self, inputs: MaskInputs, mean: torch.Tensor | None, planes: torch.Tensor
    ) -> tuple[KeyBits, torch.Tensor]:
        """Bits of all N keys (`KeyBits`; `words()` gives `(B, H_kv, bits * tables, words)`
        int64, bit-major) and norms ||k - mu|| `(B, H_kv, N, 1)`, cached and extended key by key.

        With `mips` the bits depend on M_norm = max norm over the current keys, per (batch, KV
        head); when it differs from the one the cached bits were hashed with, all are recomputed
        (the one host read of this masker: whether M_norm grew), and so is the bucket index.
        """
        cache = inputs.state.layer(inputs.layer_idx)
        suffix = self._suffix(inputs)
        bits_name = f"magicpig_codes_{suffix}"
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
                cache.pop(bits_name, None)
                cache[norm_name] = m_norm

        def signs_of(start: int, stop: int) -> torch.Tensor:
            keys = shifted(start, stop)
            if m_norm is not None:
                keys = keys / m_norm
                extra = (1.0 - keys.pow(2).sum(dim=-1, keepdim=True)).clamp_min(0.0).sqrt()
                keys = torch.cat([keys, extra], dim=-1)
            return hash_signs(keys, planes)

        indexed = self._indexed(inputs)
        code_bits = self.lsh_k if indexed else 0  # codes for the bucket index
        entry = cache.get(bits_name)
        if not isinstance(entry, KeyBits):
            cache.pop(self._index_name(inputs), None)  # codes of bits that are hashed anew
            entry = KeyBits.empty(inputs.keys, planes.shape[-1], inputs.n_keys, code_bits)
        elif entry.length > inputs.n_keys:  # not cropped by the state: nor was the index
            cache.pop(self._index_name(inputs), None)
            entry = entry.crop(inputs.n_keys) or KeyBits.empty(
                inputs.keys, planes.shape[-1], inputs.n_keys, code_bits
            )
        batch, kv_heads, _, dim = inputs.keys.shape
        # key blocks as the state hashed them before (same matmul shapes, same bits)
        block = inputs.key_block(batch * kv_heads * (self.lsh_k * self.lsh_l * 16 + dim * 8))
        for start in range(entry.length, inputs.n_keys, block):
            entry = entry.extend(
                bit_major(signs_of(start, min(start + block, inputs.n_keys)), self.lsh_k)
            )
        if entry.codes is not None and not indexed:  # grown past its share: bits alone
            cache.pop(self._index_name(inputs), None)
            entry = entry.without_codes()
        cache[bits_name] = entry
        return entry, norms if m_norm is None else m_norm

    def _indexed(self, inputs: MaskInputs) -> bool:
        """Whether the layer keeps table codes and a bucket index of its keys: on CPU (the
        lookup reads hit counts back), codes of <= MAX_BITS bits, and within INDEX_SHARE of the
        budget (both stay in the state)."""
        batch, kv_heads = inputs.keys.shape[:2]
        size = index_bytes(batch, kv_heads, inputs.n_keys, self.lsh_l)
        on_cpu = inputs.keys.device.type == "cpu"
        fits = size <= inputs.scope.memory_bytes * INDEX_SHARE
        return on_cpu and self.lsh_k <= MAX_BITS and fits

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(lsh_l=8, lsh_k=2)

    def short_name(self) -> str:
        name = f"magicpig_l{self.lsh_l}k{self.lsh_k}"
        return name if self.min_table_matches == 1 else f"{name}m2"
