"""Sampling maskers: unbiased estimator (Monte Carlo) and MagicPIG collision rates."""

from __future__ import annotations

import math

import pytest
import torch

from sparse_attention_hub.sparse_attention import (
    AdaptiveSamplingConfig,
    LocalMaskerConfig,
    MagicPigConfig,
    MaskerConfig,
    RandomSamplingConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    SparseState,
    build_mask,
)

from .helpers import Shape, empty_mask, inputs_for, qkv

SHAPE = Shape(batch=1, kv_heads=1, groups=2, q_len=2, k_len=40, dim=8)
DRAWS = 200


def estimates(
    mask: torch.Tensor, logits: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Horvitz-Thompson numerator (B, H, Q, D) and denominator (B, H, Q) of docs/methods.md §5."""
    row_max = logits.amax(-1, keepdim=True)
    weights = torch.where(mask > 0, torch.exp(logits - row_max) / mask.clamp_min(1e-30), 0.0)
    values = values.repeat_interleave(logits.shape[1] // values.shape[1], dim=1)
    return weights @ values, weights.sum(-1)


@pytest.mark.parametrize(
    "sampler",
    [
        RandomSamplingConfig(sampling_rate=0.2),
        AdaptiveSamplingConfig(base_rate_sampling=4, epsilon=0.5, delta=0.5),
        MagicPigConfig(lsh_l=6, lsh_k=2),
        MagicPigConfig(lsh_l=6, lsh_k=2, transform="none", min_table_matches=2, packing="none"),
    ],
    ids=["random", "adaptive", "magicpig_mips_m1", "magicpig_none_m2"],
)
def test_estimator_is_unbiased(sampler: MaskerConfig) -> None:
    q, k, v = qkv(SHAPE, seed=11)
    q = q * 0.5  # moderate logits keep the Monte-Carlo variance small
    maskers = [SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=3), sampler]
    dense_mask = torch.ones(1)
    numerators, denominators = [], []
    for draw in range(DRAWS):
        state = SparseState()
        state.begin_question(f"sample-{draw}", 0)
        config = ResearchAttentionConfig(maskers, seed=draw)
        inputs = inputs_for(q, k, v, state=state, seed=draw)
        mask = build_mask(config, inputs)
        numerator, denominator = estimates(mask, inputs.logits, inputs.values)
        numerators.append(numerator)
        denominators.append(denominator)
        dense_mask = inputs.allowed.float()
    true_num, true_den = estimates(dense_mask, inputs.logits, inputs.values)
    for samples, truth in (
        (torch.stack(numerators), true_num),
        (torch.stack(denominators), true_den),
    ):
        mean = samples.mean(0)
        stderr = samples.std(0) / math.sqrt(DRAWS)
        assert ((mean - truth).abs() <= 5 * stderr + 1e-3 * truth.abs() + 1e-4).all()
    # and the draws really vary (the test could fail)
    assert torch.stack(denominators).std(0).max() > 0


def expected_collision_probability(
    q: torch.Tensor, k: torch.Tensor, config: MagicPigConfig
) -> torch.Tensor:
    """p of docs/methods.md §6.10 step 5 from scratch, `(B, H, Q, N)` (single KV head)."""
    context = k.shape[2] - q.shape[2]
    shifted = k - k[:, :, :context].mean(2, keepdim=True)
    dots = q @ shifted.transpose(-1, -2)
    if config.transform == "mips":
        cosine = dots / (q.norm(dim=-1, keepdim=True) * shifted.norm(dim=-1).max())
    else:
        cosine = dots / (q.norm(dim=-1, keepdim=True) * shifted.norm(dim=-1)[:, :, None, :])
    per_table = (1 - torch.arccos(cosine.double().clamp(-1, 1)) / math.pi) ** config.lsh_k
    tables = config.lsh_l
    p = 1 - (1 - per_table) ** tables
    if config.min_table_matches == 2:
        p = p - tables * per_table * (1 - per_table) ** (tables - 1)
    return p


@pytest.mark.parametrize(
    "config",
    [
        MagicPigConfig(lsh_l=3, lsh_k=2),
        MagicPigConfig(lsh_l=3, lsh_k=2, min_table_matches=2, transform="none"),
        MagicPigConfig(lsh_l=4, lsh_k=3, packing="none"),
    ],
    ids=["mips_m1", "none_m2", "mips_unpacked"],
)
def test_magicpig_collision_rate_matches_p(config: MagicPigConfig) -> None:
    shape = Shape(batch=1, kv_heads=1, groups=1, q_len=1, k_len=24, dim=6)
    q, k, v = qkv(shape, seed=3)
    expected = expected_collision_probability(q, k, config)
    hits = torch.zeros_like(expected)
    draws = 400
    for seed in range(draws):
        inputs = inputs_for(q, k, v, seed=seed)
        mask = config.add_mask(inputs, empty_mask(inputs))
        selected = mask > 0
        assert torch.allclose(
            mask[selected].double(), expected[selected].clamp_min(1e-4), atol=1e-5
        )
        hits += selected
    frequency = hits / draws
    bound = 5 * (expected * (1 - expected) / draws).sqrt() + 0.02
    assert ((frequency - expected).abs() <= bound).all()
    assert expected.min() < 0.5 < expected.max()  # a spread of probabilities was tested
