"""SparseState: seeds, call counters, and caches that crop then re-extend like fresh ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparse_attention_hub.sparse_attention import (
    HashAttentionTopKConfig,
    MagicPigConfig,
    QuestTopKConfig,
    RandomSamplingConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    SparseState,
    build_mask,
)
from sparse_attention_hub.sparse_attention.maskers.hashattention import (
    write_random_weights as write_hat_weights,
)
from sparse_attention_hub.sparse_attention.state import KeyPrefix

from .helpers import HAT_KW, inputs_for

HEADS, KV_HEADS, DIM, CONTEXT = 4, 2, 8, 21


def run_question(
    state: SparseState,
    config: ResearchAttentionConfig,
    question_keys: torch.Tensor,
    seed: int,
    decode_steps: int,
    layers: int = 2,
) -> list[torch.Tensor]:
    """Question prefill then decode steps over context + question keys; masks of every call."""
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(1, KV_HEADS, CONTEXT, DIM, generator=torch.Generator().manual_seed(0))
    keys = torch.cat([context, question_keys], dim=2)
    prefill = question_keys.shape[2] - decode_steps
    masks = []
    for n_keys, q_len in [(CONTEXT + prefill, prefill)] + [
        (CONTEXT + prefill + step, 1) for step in range(1, decode_steps + 1)
    ]:
        q = torch.randn(1, HEADS, q_len, DIM, generator=generator)
        for layer in range(layers):
            k = keys[:, :, :n_keys]
            inputs = inputs_for(q, k, k, state=state, layer_idx=layer, seed=config.seed)
            masks.append(build_mask(config, inputs))
    return masks


def configs(tmp_path: Path) -> dict[str, ResearchAttentionConfig]:
    hat = HashAttentionTopKConfig(
        heavy_size=5, hat_weight_file=write_hat_weights(tmp_path, HEADS, DIM), **HAT_KW
    )
    return {
        "quest": ResearchAttentionConfig(
            [QuestTopKConfig(heavy_size=8, page_size=4, label_bits=6)]
        ),
        "hashattention": ResearchAttentionConfig([hat]),
        "magicpig_mips": ResearchAttentionConfig(
            [SinkMaskerConfig(sink_size=1), MagicPigConfig(lsh_l=5, lsh_k=3)]
        ),
        "magicpig_none": ResearchAttentionConfig(
            [MagicPigConfig(lsh_l=5, lsh_k=3, transform="none", packing="none")]
        ),
        "random": ResearchAttentionConfig([RandomSamplingConfig(sampling_rate=0.3)], seed=4),
    }


@pytest.mark.parametrize(
    "name", ["quest", "hashattention", "magicpig_mips", "magicpig_none", "random"]
)
@pytest.mark.parametrize("explicit_crop", [True, False])
def test_crop_then_reextend_equals_fresh(name: str, explicit_crop: bool, tmp_path: Path) -> None:
    config = configs(tmp_path)[name]
    generator = torch.Generator().manual_seed(9)
    first = torch.randn(1, KV_HEADS, 9, DIM, generator=generator) * 6  # large norms: M_norm grows
    second = torch.randn(1, KV_HEADS, 13, DIM, generator=generator)  # longer than the first

    reused = SparseState()
    reused.begin_question("s", 0)
    run_question(reused, config, first, seed=1, decode_steps=4)
    if explicit_crop:
        reused.crop(CONTEXT)
    reused.begin_question("s", 1)
    again = run_question(reused, config, second, seed=2, decode_steps=3)

    fresh = SparseState()
    fresh.begin_question("s", 1)
    expected = run_question(fresh, config, second, seed=2, decode_steps=3)
    for got, want in zip(again, expected, strict=True):
        assert torch.equal(got, want)
    for layer in range(2):
        cache, fresh_cache = reused.layer(layer), fresh.layer(layer)
        assert cache.keys() == fresh_cache.keys()
        for key, entry in cache.items():
            if isinstance(entry, KeyPrefix):
                assert torch.equal(entry.data, fresh_cache[key].data)


def test_crop_drops_derived_entries() -> None:
    state = SparseState()
    state.prefix(0, "sig", 10, lambda start, stop: torch.arange(start, stop).float()[:, None])
    state.prefix(1, "pages", 3, lambda start, stop: torch.ones(stop - start, 1), keys_per_row=4)
    state.layer(1)["planes"] = "independent of the keys"
    state.crop(6)
    assert state.layer(0)["sig"].rows == 6
    assert state.layer(1)["pages"].rows == 1  # only complete pages of 4 below position 6
    assert state.layer(1)["planes"] == "independent of the keys"
    calls = []

    def compute(start: int, stop: int) -> torch.Tensor:
        calls.append((start, stop))
        return torch.zeros(stop - start, 1)

    data = state.prefix(0, "sig", 8, compute)
    assert calls == [(6, 8)] and data.shape == (8, 1)
    state.crop(0)
    assert "sig" not in state.layer(0)
    with pytest.raises(ValueError, match="-1"):
        state.crop(-1)


def test_generator_is_keyed_by_question_layer_and_call() -> None:
    def draw(state: SparseState, layer: int = 0, seed: int = 0) -> float:
        return float(torch.rand(1, generator=state.generator(layer, seed)))

    a, b = SparseState(), SparseState()
    for state in (a, b):
        state.begin_question("sample-1", 2)
        state.begin_call(0, 10)
    assert draw(a) == draw(b)  # reproducible across state objects (and processes: SHA-256)
    assert draw(a) != draw(a, layer=1)
    assert draw(a) != draw(a, seed=1)
    first = draw(a)
    a.begin_call(0, 11)
    assert draw(a) != first and a.call_index(0) == 1
    a.begin_question("sample-1", 2)  # resets the call counter
    a.begin_call(0, 10)
    assert draw(a) == first
    b.begin_question("sample-2", 2)
    b.begin_call(0, 10)
    assert draw(b) != first


@pytest.mark.parametrize("packing", ["int64", "none"])
def test_magicpig_rehashes_every_key_when_a_new_key_raises_m_norm(packing: str) -> None:
    config = MagicPigConfig(lsh_l=6, lsh_k=4, center=False, packing=packing)
    generator = torch.Generator().manual_seed(5)
    keys = torch.randn(1, KV_HEADS, 21, DIM, generator=generator)
    keys[:, :, 20] *= 20  # the decode step's key has by far the largest norm
    prefill_q = torch.randn(1, HEADS, 4, DIM, generator=generator)
    decode_q = torch.randn(1, HEADS, 1, DIM, generator=generator)

    state = SparseState()
    prefill = inputs_for(prefill_q, keys[:, :, :20], keys[:, :, :20], state=state)
    config.add_mask(prefill, torch.zeros(prefill.allowed.shape))
    decode = inputs_for(decode_q, keys, keys, state=state)
    grown = config.add_mask(decode, torch.zeros(decode.allowed.shape))

    fresh = inputs_for(decode_q, keys, keys)
    assert torch.equal(grown, config.add_mask(fresh, torch.zeros(fresh.allowed.shape)))
    assert (grown[..., :20] > 0).any()  # the old keys still take part


@pytest.mark.parametrize("transform", ["mips", "none"])
def test_magicpig_norms_and_codes_follow_a_recomputed_context_mean(transform: str) -> None:
    # A shorter context than the one the mean came from (e.g. the state of another request):
    # the mean is recomputed, and every key norm / code hashed with the old mean must go too.
    config = MagicPigConfig(lsh_l=6, lsh_k=3, transform=transform)
    generator = torch.Generator().manual_seed(6)
    keys = torch.randn(1, KV_HEADS, 20, DIM, generator=generator) + 3.0
    keys[:, :, 10:16] -= 6.0  # the first context's tail moves the mean a lot
    q = torch.randn(1, HEADS, 4, DIM, generator=generator)

    state = SparseState()
    first = inputs_for(q, keys, keys, state=state)  # context = keys [0, 16)
    config.add_mask(first, torch.zeros(first.allowed.shape))
    short = keys[:, :, :14]
    again = inputs_for(q, short, short, state=state)  # context = keys [0, 10)
    got = config.add_mask(again, torch.zeros(again.allowed.shape))

    fresh_state = SparseState()
    fresh = inputs_for(q, short, short, state=fresh_state)
    assert torch.equal(got, config.add_mask(fresh, torch.zeros(fresh.allowed.shape)))
    for name, entry in state.layer(0).items():
        if isinstance(entry, KeyPrefix):
            assert torch.equal(entry.data, fresh_state.layer(0)[name].data), name


def test_magicpig_any_growth_of_m_norm_rehashes() -> None:
    # however small the growth, the codes and p follow the new M_norm exactly (as fresh)
    config = MagicPigConfig(lsh_l=6, lsh_k=4, center=False)
    generator = torch.Generator().manual_seed(8)
    keys = torch.randn(1, 1, 21, DIM, generator=generator)
    largest = keys[:, :, :20].norm(dim=-1).max()
    keys[:, :, 20] *= largest * (1 + 4e-7) / keys[:, :, 20].norm()
    assert keys[:, :, 20].norm() > largest
    q = torch.randn(1, 2, 5, DIM, generator=generator)

    state = SparseState()
    prefill = inputs_for(q[:, :, :4], keys[:, :, :20], keys[:, :, :20], state=state)
    config.add_mask(prefill, torch.zeros(prefill.allowed.shape))
    decode = inputs_for(q[:, :, 4:], keys, keys, state=state)
    grown = config.add_mask(decode, torch.zeros(decode.allowed.shape))
    fresh = inputs_for(q[:, :, 4:], keys, keys)
    assert torch.equal(grown, config.add_mask(fresh, torch.zeros(fresh.allowed.shape)))
