"""One small hand-computed case per masker."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import torch
from safetensors.torch import save_file

from sparse_attention_hub.sparse_attention import (
    AdaptiveSamplingConfig,
    DoubleSparsityTopKConfig,
    HashAttentionTopKConfig,
    LocalMaskerConfig,
    MagicPigConfig,
    OracleTopKConfig,
    OracleTopPConfig,
    QuestTopKConfig,
    RandomSamplingConfig,
    SinkMaskerConfig,
    SparseState,
)
from sparse_attention_hub.sparse_attention.mask import sample_select
from sparse_attention_hub.sparse_attention.maskers.quest import page_bounds

from .helpers import empty_mask, inputs_for


def one_head(queries: list[list[float]], keys: list[list[float]]) -> tuple[torch.Tensor, ...]:
    q = torch.tensor(queries)[None, None]
    k = torch.tensor(keys)[None, None]
    return q, k, torch.zeros_like(k)


def rows(mask: torch.Tensor) -> list[list[int]]:
    return [row.nonzero().flatten().tolist() for row in mask[0, 0] > 0]


def test_sink_and_local() -> None:
    q, k, v = one_head([[0.0]] * 2, [[0.0]] * 6)  # rows at positions 4 and 5
    inputs = inputs_for(q, k, v)
    assert rows(SinkMaskerConfig(sink_size=2).add_mask(inputs, empty_mask(inputs))) == [[0, 1]] * 2
    local = LocalMaskerConfig(window_size=2).add_mask(inputs, empty_mask(inputs))
    assert rows(local) == [[3, 4], [4, 5]]
    both = LocalMaskerConfig(window_size=2).add_mask(
        inputs, SinkMaskerConfig(sink_size=2).add_mask(inputs, empty_mask(inputs))
    )
    assert rows(both) == [[0, 1, 3, 4], [0, 1, 4, 5]]
    assert set(both.unique().tolist()) == {0.0, 1.0}


def test_oracle_topk_is_additional_to_selected_keys() -> None:
    q, k, v = one_head([[1.0]], [[3.0], [1.0], [2.0], [5.0], [0.0]])
    inputs = inputs_for(q, k, v)
    assert rows(OracleTopKConfig(heavy_size=2).add_mask(inputs, empty_mask(inputs))) == [[0, 3]]
    previous = empty_mask(inputs)
    previous[..., 3] = 1.0
    assert rows(OracleTopKConfig(heavy_size=2).add_mask(inputs, previous)) == [[0, 2, 3]]


def test_oracle_topp_prefix_and_ties() -> None:
    # probabilities 0.5, 0.25, 0.125, 0.125 (head_dim 1 -> scaling 1)
    q, k, v = one_head([[1.0]], [[math.log(4)], [math.log(2)], [0.0], [0.0]])
    inputs = inputs_for(q, k, v)
    assert rows(OracleTopPConfig(top_p=0.6).add_mask(inputs, empty_mask(inputs))) == [[0, 1]]
    assert rows(OracleTopPConfig(top_p=0.8).add_mask(inputs, empty_mask(inputs))) == [[0, 1, 2, 3]]
    previous = empty_mask(inputs)
    previous[..., 1] = 1.0  # already covers 0.25
    assert rows(OracleTopPConfig(top_p=0.6).add_mask(inputs, previous)) == [[0, 1]]
    previous[..., 0] = 1.0  # covers 0.75 >= 0.6: nothing added
    assert torch.equal(OracleTopPConfig(top_p=0.6).add_mask(inputs, previous), previous)


def test_quest_page_scores() -> None:
    keys = [[0, 0], [1, 1], [2, 3], [0, 5], [-1, -2], [3, 0]]
    q, k, v = one_head([[1.0, -1.0]], [[float(x) for x in key] for key in keys])
    inputs = inputs_for(q, k, v)
    # page bounds u = 1, -1, 5 (min/max per channel of each page of 2)
    one_page = QuestTopKConfig(heavy_size=2, page_size=2).add_mask(inputs, empty_mask(inputs))
    assert rows(one_page) == [[4, 5]]
    two_pages = QuestTopKConfig(heavy_size=3, page_size=2).add_mask(inputs, empty_mask(inputs))
    assert rows(two_pages) == [[0, 1, 4, 5]]


def test_hashattention_ranks_by_hamming_distance(tmp_path: Path) -> None:
    path = tmp_path / "identity.safetensors"
    eye = torch.eye(4)[None]
    save_file(
        {
            "layers.0.query.0.weight": eye.clone(),
            "layers.0.query.0.bias": torch.zeros(1, 4),
            "layers.0.key.0.weight": eye.clone(),
            "layers.0.key.0.bias": torch.zeros(1, 4),
        },
        str(path),
    )
    q, k, v = one_head(
        [[1.0, -1.0, 1.0, 1.0]],
        [[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0], [1.0, -1.0, 1.0, 1.0], [-1.0, 1, -1, -1]],
    )  # agreements 2, 2, 4, -4
    kwargs = {"hat_weight_file": str(path), "hat_mlp_layers": 1, "hat_mlp_hidden_size": 1}
    inputs = inputs_for(q, k, v)
    one = HashAttentionTopKConfig(heavy_size=1, hat_bits=4, **kwargs)
    assert rows(one.add_mask(inputs, empty_mask(inputs))) == [[2]]
    two = HashAttentionTopKConfig(heavy_size=2, hat_bits=4, **kwargs)
    assert rows(two.add_mask(inputs, empty_mask(inputs))) == [[0, 2]]  # tie 0/1 -> lower index


def test_double_sparsity_uses_the_layers_channels(tmp_path: Path) -> None:
    path = tmp_path / "channels.json"
    path.write_text('{"model.layers.0.self_attn.qk_proj": [[2, 0, 1, 3]]}')
    q, k, v = one_head(
        [[1.0, 100.0, 2.0, 100.0]],
        [[0.0, 9, 0, 9], [1.0, 0, 1, 0], [5.0, 0, -1, 0], [0.0, 0, 3, 0]],
    )  # channel 2 and 0: scores 0, 3, 3, 6
    config = DoubleSparsityTopKConfig(
        heavy_size=2, sorted_channel_file=str(path), group_factor=2, label_bits=16
    )
    inputs = inputs_for(q, k, v)
    assert rows(config.add_mask(inputs, empty_mask(inputs))) == [[1, 3]]


def test_random_sampling_counts_and_probability() -> None:
    q, k, v = one_head([[0.0]], [[0.0]] * 10)
    inputs = inputs_for(q, k, v)
    previous = SinkMaskerConfig(sink_size=2).add_mask(inputs, empty_mask(inputs))
    mask = RandomSamplingConfig(sampling_rate=0.5).add_mask(inputs, previous)
    sampled = mask[0, 0, 0, 2:]
    assert (sampled > 0).sum() == 5  # min(8 candidates, floor(0.5 * 10))
    assert set(sampled[sampled > 0].tolist()) == {0.625}  # 5 / 8
    assert torch.equal(mask[..., :2], previous[..., :2])
    tiny = RandomSamplingConfig(sampling_rate=0.05).add_mask(inputs, previous)
    assert torch.equal(tiny, previous)  # floor(0.5) = 0 keys: nothing, no error


def test_adaptive_sampling_flat_scores_use_the_base_sample() -> None:
    q, k, v = one_head([[0.0]], [[0.0]] * 12)  # equal weights: sigma = 0
    inputs = inputs_for(q, k, v)
    config = AdaptiveSamplingConfig(
        base_rate_sampling=3, epsilon=0.1, delta=0.1, init_offset=2, local_offset=2
    )
    mask = config.add_mask(inputs, empty_mask(inputs))
    picked = rows(mask)[0]
    assert len(picked) == 3 and all(2 <= j < 10 for j in picked)
    assert torch.allclose(mask[0, 0, 0, picked], torch.full((3,), 3 / 8))
    total, count = inputs.metrics["adaptive_budget_mean"]
    assert float(total / count) == 3


def test_adaptive_sampling_budget_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 1, 4, generator=generator)
    k = torch.randn(1, 1, 200, 4, generator=generator)
    state = SparseState()
    inputs = inputs_for(q, k, torch.zeros_like(k), state=state)
    config = AdaptiveSamplingConfig(base_rate_sampling=20, epsilon=0.1, delta=0.2)
    previous = SinkMaskerConfig(sink_size=4).add_mask(inputs, empty_mask(inputs))
    mask = config.add_mask(inputs, previous)
    # recompute by hand with the same seeded generator
    weights = torch.exp(inputs.logits - inputs.logits.max())[0, 0, 0].double()
    residual = torch.ones(200, dtype=torch.bool)
    residual[:4] = False
    noise = torch.rand(1, 200, generator=state.generator(0, 0), dtype=torch.float64)
    base = sample_select(residual[None], torch.tensor([20]), noise)[0]
    sample = weights[base]
    n = 196
    estimate = weights[:4].sum() + n * sample.mean()
    z = NormalDist().inv_cdf(0.8)
    budget = math.ceil((z * sample.std().item() * n / (0.1 * estimate.item())) ** 2)
    budget = min(max(budget, 20), n)
    assert 20 < budget < n  # the formula, not a clamp, decides here
    total, count = inputs.metrics["adaptive_budget_mean"]
    assert float(total / count) == budget
    drawn = mask[0, 0, 0, 4:]  # a fresh draw of `budget` residual keys, each with p = budget / n
    assert int((drawn > 0).sum()) == budget
    assert torch.allclose(drawn[drawn > 0], torch.tensor(budget / n))
    assert torch.equal(mask[..., :4], previous[..., :4])


def test_magicpig_probability_and_collisions() -> None:
    q, k, v = one_head([[1.0, 0.0]], [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    config = MagicPigConfig(lsh_l=1, lsh_k=1, center=False, transform="none")
    seen = set()
    for seed in range(40):
        inputs = inputs_for(q, k, v, seed=seed)
        mask = config.add_mask(inputs, empty_mask(inputs))[0, 0, 0]
        assert mask[0] == 1.0  # same direction: always collides, p = 1
        assert mask[1] == 0.0  # opposite: never collides
        assert mask[2] in (0.0, 0.5)  # orthogonal: p = 1 - (pi / 2) / pi
        seen.add(float(mask[2]))
    assert seen == {0.0, 0.5}


def test_adaptive_sampling_zero_base_rate_and_empty_range_add_nothing() -> None:
    q, k, v = one_head([[1.0]], [[float(j % 3)] for j in range(12)])
    inputs = inputs_for(q, k, v)
    previous = SinkMaskerConfig(sink_size=2).add_mask(inputs, empty_mask(inputs))
    off = AdaptiveSamplingConfig(base_rate_sampling=0, epsilon=0.1, delta=0.1)
    assert torch.equal(off.add_mask(inputs, previous), previous)
    past_the_end = AdaptiveSamplingConfig(
        base_rate_sampling=4, epsilon=0.1, delta=0.1, init_offset=6, local_offset=0.5
    )  # range [6, 12 - 6) is empty
    assert torch.equal(past_the_end.add_mask(inputs, previous), previous)
    assert int(inputs.metrics["adaptive_budget_mean"][1]) == 0  # nothing to report


def test_quest_page_bounds_partial_page_and_label_bits() -> None:
    keys = torch.tensor([[0.0, 1, 2, 3], [3, 0, 0, 0], [5, -1, 4, 2]])[None, None]
    exact = page_bounds(keys, page_size=2, label_bits=16)[0, 0]
    assert exact.tolist() == [[0, 0, 0, 0, 3, 1, 2, 3], [5, -1, 4, 2, 5, -1, 4, 2]]
    # 1 bit along the channels: max [3, 1, 2, 3] -> levels {1, 3}; min [0, 0, 0, 0] unchanged
    one_bit = page_bounds(keys, page_size=2, label_bits=1)[0, 0]
    assert one_bit[0].tolist() == [0, 0, 0, 0, 3, 1, 1, 3]
