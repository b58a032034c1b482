"""`oracle_topp`: the fewest keys whose dense mass reaches `top_p` (docs/methods.md §6.4).

Mass is always measured against the whole row's dense softmax, counting what earlier maskers
already selected, so the final mask covers at least `top_p` of the dense attention mass.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import torch

from sparse_attention_hub.sparse_attention.bools import any_last, to_float
from sparse_attention_hub.sparse_attention.budget import Fraction
from sparse_attention_hub.sparse_attention.maskers.base import (
    MASKERS,
    MaskerConfig,
    MaskInputs,
    add_selected,
    format_budget,
)


@MASKERS.register("oracle_topp")
class OracleTopPConfig(MaskerConfig):
    """Adds the highest-probability candidates until covered mass >= `top_p` (ties included)."""

    type: Literal["oracle_topp"] = "oracle_topp"
    top_p: Fraction

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        eligible = inputs.candidates(previous)
        if self.top_p >= 1.0:
            return add_selected(previous, eligible)
        # a row with no allowed key is all -inf: raised to 0 (max(-inf, 0)) so softmax stays
        # finite; other rows are raised to -inf, which changes nothing
        has_allowed = any_last(inputs.allowed, keepdim=True)
        floor = torch.zeros(has_allowed.shape, device=has_allowed.device)
        floor = floor.masked_fill_(has_allowed, float("-inf"))
        probs = torch.softmax(torch.maximum(inputs.logits, floor), dim=-1)
        probs = probs.mul_(to_float(inputs.allowed))  # probs are finite: x * 0 = 0
        covered = (probs * to_float(previous.bool() & inputs.allowed)).sum(dim=-1, keepdim=True)
        return add_selected(previous, top_p_select(probs, eligible, covered, self.top_p))

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(top_p=0.5)

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        return cls(top_p=1.0)

    def short_name(self) -> str:
        return f"topp{format_budget(self.top_p)}"


def top_p_select(
    probs: torch.Tensor, eligible: torch.Tensor, covered: torch.Tensor, top_p: float
) -> torch.Tensor:
    """Eligible entries taken in descending probability while the mass before them is < top_p.

    probs `(..., N)` >= 0; `covered` `(..., 1)`, mass selected already. Entry j is taken when
    covered + G(p_j) < top_p, G(v) = the eligible mass strictly above v; the taken set is
    {p_j >= t}, t the smallest such p_j (so ties with the last key are taken, as in a sort).
    t is found without sorting (docs/methods.md §6.4): non-negative float32 values order like
    their bit patterns, so a radix descent over their 4 bytes picks, per byte, the lowest bucket
    whose largest key is still taken (a bucket's largest key has G = the mass of the buckets
    above it). Same set as a stable sort's cumulative sum, up to float rounding of the sums.
    """
    values = (probs * to_float(eligible)).contiguous()  # probs >= 0 and finite: +0 off eligible
    bits = values.view(torch.int32)
    weights = values.clone()  # the mass still in the chosen bucket, zeroed level by level
    digits = bits.view(torch.uint8).unflatten(-1, (-1, 4))  # the 4 bytes of every value
    order = [3, 2, 1, 0] if sys.byteorder == "little" else [0, 1, 2, 3]  # most significant first
    above = torch.zeros_like(covered)
    prefix = torch.zeros(covered.shape, dtype=torch.int32, device=probs.device)
    found = everything = torch.zeros(covered.shape, dtype=torch.bool, device=probs.device)
    for level, byte in enumerate(order):
        digit = digits[..., byte].long()
        mass = weights.new_zeros((*weights.shape[:-1], 256)).scatter_add_(-1, digit, weights)
        # mass strictly above bucket d: `above` plus the buckets d' > d; a bucket with mass
        # holds a positive key (keys of probability 0 are handled by `everything`)
        above_bucket = above + (mass.flip(-1).cumsum(-1).flip(-1) - mass)
        taken = (mass > 0) & (covered + above_bucket < top_p)
        chosen = taken.to(torch.uint8).argmax(dim=-1, keepdim=True)  # lowest taken bucket
        if level == 0:
            found = taken.any(dim=-1, keepdim=True)
            everything = covered + mass.sum(dim=-1, keepdim=True) < top_p
        above = above_bucket.gather(-1, chosen)
        prefix = (prefix << 8) | chosen.to(torch.int32)
        weights = weights.mul_(to_float(digit == chosen))  # keep the chosen bucket only
    return eligible & (((bits >= prefix) & found) | everything)
