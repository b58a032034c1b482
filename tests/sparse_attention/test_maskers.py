"""Properties every masker must have, one parametrized matrix over the masker registry."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_attention_hub.sparse_attention import (
    MASKERS,
    OracleTopPConfig,
    QuestTopKConfig,
    ResearchAttentionConfig,
    SparseState,
    dense_attention,
    sparse_attention_forward,
)
from sparse_attention_hub.sparse_attention.maskers.adaptive_sampling import sample_moments
from sparse_attention_hub.sparse_attention.maskers.quest import page_bounds, page_scores

from .helpers import EXAMPLES, Shape, empty_mask, inputs_for, qkv, reference_attention, shapes

FAST = settings(max_examples=12, deadline=None)
BUDGET_FIELDS = ("sink_size", "window_size", "heavy_size")


@pytest.mark.parametrize("name", MASKERS.names())
@FAST
@given(
    shape=shapes(),
    seed=st.integers(0, 1000),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
)
def test_full_budget_equals_dense_attention(
    name: str, shape: Shape, seed: int, dtype: torch.dtype
) -> None:
    q, k, v = qkv(shape, seed, dtype)
    with tempfile.TemporaryDirectory() as directory:
        full = EXAMPLES[name][1](shape, Path(directory))
        if full is None:
            return  # no full-budget setting (MagicPIG's p < 1); its unbiasedness is tested instead
        config = ResearchAttentionConfig([full])
        out = sparse_attention_forward(
            q, k, v, None, shape.dim**-0.5, layer_idx=0, config=config, state=SparseState()
        )
    dense = dense_attention(q, k, v, None, shape.dim**-0.5)
    assert out.dtype == dtype and out.shape == (shape.batch, shape.q_len, shape.heads, shape.dim)
    assert torch.equal(out, dense)
    allowed = inputs_for(q, k, v).allowed
    reference = reference_attention(q, k, v, allowed)  # float32 math on the rounded inputs
    if dtype == torch.float32:
        torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6)
    else:  # computed in float32 and rounded once: within the dtype's default tolerance
        torch.testing.assert_close(out, reference.to(dtype))


@pytest.mark.parametrize("name", MASKERS.names())
@FAST
@given(shape=shapes(), seed=st.integers(0, 1000))
def test_mask_is_a_clamped_monotone_union_on_allowed_entries(
    name: str, shape: Shape, seed: int
) -> None:
    q, k, v = qkv(shape, seed)
    inputs = inputs_for(q, k, v)
    generator = torch.Generator().manual_seed(seed)
    previous = (torch.rand(inputs.allowed.shape, generator=generator) < 0.2).float()
    previous = previous * inputs.allowed
    before = previous.clone()
    with tempfile.TemporaryDirectory() as directory:
        masker = EXAMPLES[name][0](shape, Path(directory))
        mask = masker.add_mask(inputs, previous)
        again = masker.add_mask(inputs_for(q, k, v), previous)
    assert torch.equal(previous, before)
    assert mask.dtype == torch.float32 and mask.shape == previous.shape
    assert (mask >= previous).all() and (mask <= 1).all()
    assert not ((mask > 0) & ~inputs.allowed).any()
    density = ((mask > 0) & inputs.allowed).sum() / inputs.allowed.sum()
    assert density <= 1
    assert torch.equal(mask, again)  # seeded: same state key, same mask


@pytest.mark.parametrize("name", MASKERS.names())
@settings(max_examples=8, deadline=None)
@given(shape=shapes(max_keys=30), seed=st.integers(0, 1000), data=st.data())
def test_int_and_fraction_budgets_select_the_same_keys(
    name: str, shape: Shape, seed: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        masker = EXAMPLES[name][0](shape, Path(directory))
        fields = [field for field in BUDGET_FIELDS if field in type(masker).model_fields]
        if not fields:
            return  # no key budget (top_p, sampling rates)
        size = data.draw(st.integers(1, shape.k_len))
        as_int = masker.model_validate({**masker.model_dump(), fields[0]: size})
        as_float = masker.model_validate({**masker.model_dump(), fields[0]: size / shape.k_len})
        q, k, v = qkv(shape, seed)
        a = as_int.add_mask(inputs_for(q, k, v), empty_mask(inputs_for(q, k, v)))
        b = as_float.add_mask(inputs_for(q, k, v), empty_mask(inputs_for(q, k, v)))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "name", ["sink", "local", "oracle_topk", "quest", "hashattention", "double_sparsity"]
)
def test_budget_edge_cases(name: str, tmp_path: Path) -> None:
    shape = Shape(batch=1, kv_heads=1, groups=2, q_len=1, k_len=20, dim=8)
    q, k, v = qkv(shape, 5)
    masker = EXAMPLES[name][0](shape, tmp_path)
    field = next(f for f in BUDGET_FIELDS if f in type(masker).model_fields)

    def selected(budget: float) -> torch.Tensor:
        config = masker.model_validate({**masker.model_dump(), field: budget})
        inputs = inputs_for(q, k, v)
        return (config.add_mask(inputs, empty_mask(inputs)) > 0).sum(-1)

    assert (selected(0.01) == 0).all()  # floor(0.01 * 20) = 0 keys: nothing, no error
    one = selected(1)
    expected_one = 4 if name == "quest" else 1  # quest rounds up to one page of 4
    assert (one == expected_one).all()
    assert (selected(1000) == 20).all()  # more than N: every candidate


@settings(max_examples=25, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 1000), top_p=st.floats(0.05, 1.0))
def test_oracle_topp_covers_at_least_top_p(shape: Shape, seed: int, top_p: float) -> None:
    q, k, v = qkv(shape, seed)
    inputs = inputs_for(q, k, v)
    mask = OracleTopPConfig(top_p=top_p).add_mask(inputs, empty_mask(inputs))
    probs = torch.softmax(inputs.logits, dim=-1)
    covered = (probs * (mask > 0)).sum(-1)
    assert (covered >= top_p - 1e-5).all()
    # minimal up to ties: dropping the smallest selected key loses the coverage
    smallest = probs.masked_fill(mask == 0, 2.0).amin(-1)
    ties = ((probs == smallest[..., None]) & (mask > 0)).sum(-1)
    assert ((covered - smallest * ties < top_p + 1e-5) | (ties == (mask > 0).sum(-1))).all()


@settings(max_examples=25, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 1000), page_size=st.integers(1, 6))
def test_quest_page_bound_is_an_upper_bound(shape: Shape, seed: int, page_size: int) -> None:
    q, k, v = qkv(shape, seed)
    inputs = inputs_for(q, k, v)
    bounds = inputs.per_query_head(page_bounds(inputs.keys, page_size, 16))
    scores = page_scores(inputs.queries, bounds[..., : shape.dim], bounds[..., shape.dim :])
    for page in range(scores.shape[-1]):
        keys = slice(page * page_size, (page + 1) * page_size)
        true_max = inputs.scores[..., keys].amax(-1)
        assert (scores[..., page] >= true_max - 1e-4).all()


def test_quest_selects_whole_pages_with_allowed_keys() -> None:
    shape = Shape(batch=1, kv_heads=1, groups=1, q_len=3, k_len=10, dim=4)
    q, k, v = qkv(shape, 2)
    inputs = inputs_for(q, k, v)
    mask = QuestTopKConfig(heavy_size=4, page_size=4).add_mask(inputs, empty_mask(inputs))
    chosen = mask[0, 0] > 0
    for row in range(3):
        picked = chosen[row].nonzero().flatten().tolist()
        pages = {j // 4 for j in picked}
        assert len(pages) == 1
        page = pages.pop()
        allowed = [
            j for j in range(page * 4, min(page * 4 + 4, 10)) if inputs.allowed[0, 0, row, j]
        ]
        assert picked == allowed


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 6),
    n_keys=st.integers(1, 80),
    share=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    seed=st.integers(0, 10_000),
)
def test_sample_moments_read_from_the_sample_equal_whole_rows(
    rows: int, n_keys: int, share: float, seed: int
) -> None:
    """vAttention's base-sample mean and squared deviation, from the sampled entries alone (the
    CPU path) and over whole rows: the same up to the order of float64 additions."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(1, 2, rows, n_keys, generator=generator)
    weights[..., :1] = 1.0  # a row's maximum, as exp(s - max) gives
    sample = torch.rand(1, 2, rows, n_keys, generator=generator) < share
    count = sample.sum(dim=-1).double().clamp_min(1)
    mean, square_dev = sample_moments(weights, sample, count, picked=True)
    whole_mean, whole_square_dev = sample_moments(weights, sample, count, picked=False)
    assert mean.dtype == square_dev.dtype == torch.float64
    torch.testing.assert_close(mean, whole_mean, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(square_dev, whole_square_dev, rtol=1e-12, atol=1e-15)
    expected = [  # the definition, row by row
        (w[s].double().mean().item() if s.any() else 0.0)
        for w, s in zip(weights.view(-1, n_keys), sample.view(-1, n_keys), strict=True)
    ]
    torch.testing.assert_close(mean.view(-1), torch.tensor(expected, dtype=torch.float64))
