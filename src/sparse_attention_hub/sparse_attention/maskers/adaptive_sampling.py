"""`adaptive_sampling`: a per-row sampling budget with an (epsilon, delta) guarantee
(docs/methods.md §6.9).

*Paper*: vAttention, Desai et al., 2025 — heavy hitters plus uniform sampling of the residual,
budget from the CLT on the softmax denominator.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist
from typing import ClassVar, Literal

import torch

from sparse_attention_hub.sparse_attention.bools import count_last, flat_positions, to_float
from sparse_attention_hub.sparse_attention.budget import (
    BaseRate,
    Offset,
    UnitFloat,
    effective_size,
)
from sparse_attention_hub.sparse_attention.mask import sample_select, union
from sparse_attention_hub.sparse_attention.maskers.base import (
    MASKERS,
    MaskerConfig,
    MaskInputs,
    format_budget,
)


@MASKERS.register("adaptive_sampling")
class AdaptiveSamplingConfig(MaskerConfig):
    """Base sample -> sigma and denominator estimate -> budget -> fresh uniform draw of `budget`.

    Budget = ceil((z * sigma * n / (epsilon * D_hat))^2) clamped to [b, n], z = Phi^-1(1 - delta);
    every drawn key gets value budget / n. Logs `adaptive_budget_mean` per call.
    """

    kind: ClassVar[Literal["fixed", "sampling"]] = "sampling"
    type: Literal["adaptive_sampling"] = "adaptive_sampling"
    base_rate_sampling: BaseRate
    epsilon: UnitFloat
    delta: UnitFloat
    init_offset: Offset = 0
    local_offset: Offset = 0

    def add_mask(self, inputs: MaskInputs, previous: torch.Tensor) -> torch.Tensor:
        if self.base_rate_sampling == 0:
            return previous.clone()
        n_keys = inputs.n_keys
        start = effective_size(self.init_offset, n_keys)
        end = n_keys - effective_size(self.local_offset, n_keys)
        residual = inputs.candidates(previous)  # a new tensor: filled in place
        residual[..., :start] = False
        residual[..., max(start, end) :] = False
        n = count_last(residual)  # (B, H, Q); rows with n = 0 draw nothing
        size = n.double()
        logits = inputs.logits
        row_max = logits.amax(dim=-1, keepdim=True)
        if not inputs.every_allowed:  # a row without allowed keys has maximum -inf
            row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
        weights = (logits - row_max).exp_()  # 0 on disallowed entries (logits -inf there)
        # the maskers before a sampling masker are fixed: `previous` holds 0 or 1
        static = (weights * previous).sum(dim=-1)

        if isinstance(self.base_rate_sampling, int):
            base = torch.full_like(n, self.base_rate_sampling)
            limit = max(self.base_rate_sampling, 2)
        else:
            base = torch.floor(self.base_rate_sampling * size + 1e-9).long()
            limit = max(effective_size(self.base_rate_sampling, n_keys), 2)
        base = torch.minimum(torch.maximum(base, n.clamp(max=2)), n)
        base_sample = sample_select(residual, base, inputs.uniform(0), limit)
        count = base.double().clamp_min(1)
        mean, square_dev = sample_moments(weights, base_sample, count)
        del weights, base_sample
        sigma = torch.where(base >= 2, (square_dev / (count - 1).clamp_min(1)).sqrt(), 0.0)
        estimate = static.double() + size * mean
        z = NormalDist().inv_cdf(1.0 - self.delta)
        ratio = z * sigma * size / (self.epsilon * estimate.clamp_min(1e-300))
        budget = torch.ceil(ratio**2).clamp(max=float(n_keys)).long()
        budget = torch.minimum(torch.maximum(budget, base), n)

        chosen = sample_select(residual, budget, inputs.uniform(1))
        probability = budget.float() / n.clamp_min(1).float()
        active = n > 0
        inputs.add_metric("adaptive_budget_mean", (budget * active).sum().float(), active.sum())
        return union(previous, to_float(chosen).mul_(probability.unsqueeze(-1)))

    @classmethod
    def example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig:
        return cls(base_rate_sampling=0.5, epsilon=0.2, delta=0.2)

    @classmethod
    def full_budget_example(cls, heads: int, head_dim: int, workdir: Path) -> MaskerConfig | None:
        return cls(base_rate_sampling=10**6, epsilon=0.2, delta=0.2)

    def short_name(self) -> str:
        rate = format_budget(self.base_rate_sampling)
        return f"adaptive{rate}_e{self.epsilon:g}_d{self.delta:g}"


def sample_moments(
    weights: torch.Tensor, sample: torch.Tensor, count: torch.Tensor, picked: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and summed squared deviation of `weights` over each row's `sample`, float64 with
    the row shape (`count`: the sample sizes, at least 1).

    `picked` (default: on CPU) reads the sampled entries only (`bools.flat_positions`: no host
    round trip): a base sample holds a few percent of a row, and the float64 passes over whole
    rows were a tenth of a vAttention decode step. Otherwise whole rows, nothing read back. The
    same sums up to the order of float64 additions.
    """
    if picked is None:
        picked = weights.device.type == "cpu"
    if picked:
        position = torch.from_numpy(flat_positions(sample, weights.shape))
        row = position.div(weights.shape[-1], rounding_mode="floor")
        values = weights.take(position).double()
        totals = torch.zeros(count.numel(), dtype=torch.float64).index_add_(0, row, values)
        mean = totals.view(count.shape) / count
        values.sub_(mean.reshape(-1).index_select(0, row)).pow_(2)
        square_dev = torch.zeros(count.numel(), dtype=torch.float64).index_add_(0, row, values)
        return mean, square_dev.view(count.shape)
    mean = (weights * to_float(sample)).double().sum(dim=-1) / count
    deviation = (
        weights.double().sub_(mean.unsqueeze(-1)).pow_(2).mul_(to_float(sample, torch.float64))
    )
    return mean, deviation.sum(dim=-1)  # in place: one float64 row-sized temporary
