"""Mask algebra: union, exact top-k with ties, uniform sampling, pseudo-quantisation."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_attention_hub.sparse_attention import pseudo_quantize
from sparse_attention_hub.sparse_attention.mask import (
    _histogram_rows,
    _smallest_keys,
    kth_largest,
    sample_select,
    topk_select,
    union,
)

FAST = settings(max_examples=30, deadline=None)


@FAST
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 4), cols=st.integers(1, 30))
def test_union_is_monotone_and_clamped(seed: int, rows: int, cols: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    previous = torch.rand(rows, cols, generator=generator) * (
        torch.rand(rows, cols, generator=generator) > 0.5
    )
    new = torch.rand(rows, cols, generator=generator) * 1.5
    before = previous.clone()
    result = union(previous, new)
    assert torch.equal(previous, before)  # never edited in place
    assert (result >= previous).all() and (result <= 1).all() and (result >= 0).all()
    assert result.dtype == torch.float32


@FAST
@given(
    seed=st.integers(0, 10_000),
    cols=st.integers(1, 25),
    k=st.integers(0, 30),
    levels=st.integers(1, 6),
)
def test_topk_select_matches_definition_with_ties_to_lower_index(
    seed: int, cols: int, k: int, levels: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (3, cols), generator=generator).float()  # many ties
    scores = scores - levels // 2  # integers in [-levels, levels], negative ones too
    eligible = torch.rand(3, cols, generator=generator) > 0.3
    chosen = topk_select(scores, eligible, k)
    # the histogram path for integer scores picks the very same entries
    assert torch.equal(topk_select(scores, eligible, k, levels=levels), chosen)
    for row in range(3):
        ranked = sorted(
            (j for j in range(cols) if eligible[row, j]), key=lambda j: (-scores[row, j].item(), j)
        )
        expected = set(ranked[:k])
        assert set(torch.nonzero(chosen[row]).flatten().tolist()) == expected


@FAST
@given(seed=st.integers(0, 10_000), cols=st.integers(1, 30))
def test_sample_select_draws_exact_counts_of_eligible(seed: int, cols: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    eligible = torch.rand(4, cols, generator=generator) > 0.4
    available = eligible.sum(-1)
    counts = (available.float() * torch.rand(4, generator=generator)).long()
    noise = torch.rand(eligible.shape, generator=generator, dtype=torch.float64)
    chosen = sample_select(eligible, counts, noise)
    assert torch.equal(chosen.sum(-1), counts)
    assert not (chosen & ~eligible).any()
    # a bound on the counts known in advance selects the same entries
    assert torch.equal(sample_select(eligible, counts, noise, int(counts.max())), chosen)


def sorted_sample(
    eligible: torch.Tensor, counts: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """The definition: sort every row's keys, take the `counts` smallest eligible ones."""
    order = noise.masked_fill(~eligible, 2.0).argsort(dim=-1)
    take = torch.arange(eligible.shape[-1]) < counts.unsqueeze(-1)
    return torch.zeros_like(eligible).scatter_(-1, order, take) & eligible


@FAST
@given(
    seed=st.integers(0, 10_000),
    cols=st.sampled_from([1, 2, 3, 7, 64, 100, 1000, 4097]),
    density=st.floats(0.0, 1.0),
)
def test_sample_select_takes_the_smallest_keys(seed: int, cols: int, density: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    eligible = torch.rand(3, 2, cols, generator=generator) < density
    available = eligible.sum(-1)
    counts = (
        available.double() * torch.rand(3, 2, generator=generator, dtype=torch.float64)
    ).long()
    counts[0, 0] = available[0, 0]  # every eligible entry
    noise = torch.rand(eligible.shape, generator=generator, dtype=torch.float64)
    expected = sorted_sample(eligible, counts, noise)
    assert torch.equal(sample_select(eligible, counts, noise), expected)
    bound = int(counts.max())
    assert torch.equal(sample_select(eligible, counts, noise, bound), expected)


def test_sample_select_in_row_blocks_equals_the_definition() -> None:
    """More rows than one block holds (35 query rows of 2 x 1000 keys: blocks of 32, then 3)."""
    generator = torch.Generator().manual_seed(2)
    eligible = torch.rand(2, 35, 1000, generator=generator) > 0.1
    counts = (eligible.sum(-1) * torch.rand(2, 35, generator=generator)).long()
    noise = torch.rand(eligible.shape, generator=generator, dtype=torch.float64)
    expected = sorted_sample(eligible, counts, noise)
    assert torch.equal(sample_select(eligible, counts, noise), expected)
    assert torch.equal(sample_select(eligible, counts, noise, int(counts.max())), expected)


def test_sample_select_keeps_exact_counts_for_crowded_keys() -> None:
    """Keys far from uniform (all in one bucket) still give exactly `counts` entries."""
    generator = torch.Generator().manual_seed(4)
    eligible = torch.rand(2, 200, generator=generator) > 0.2
    noise = torch.rand(2, 200, generator=generator, dtype=torch.float64) * 1e-4  # one bucket
    counts = torch.tensor([37, 150])
    chosen = sample_select(eligible, counts, noise)
    assert torch.equal(chosen.sum(-1), counts)
    assert not (chosen & ~eligible).any()
    smallest = sorted_sample(eligible, counts.clamp(max=16), noise)  # the ranked part is exact
    assert (chosen >= smallest).all()


def test_sample_select_is_uniform() -> None:
    eligible = torch.tensor([[True, False, True, True, True]])
    hits = torch.zeros(5)
    draws = 2000
    for seed in range(draws):
        noise = torch.rand(eligible.shape, generator=torch.Generator().manual_seed(seed))
        hits += sample_select(eligible, torch.tensor([2]), noise.double())[0]
    frequency = hits / draws
    assert frequency[1] == 0
    assert torch.allclose(frequency[[0, 2, 3, 4]], torch.full((4,), 0.5), atol=0.05)


def test_pseudo_quantize_hand_computed() -> None:
    x = torch.tensor([[0.0, 0.4, 1.0, 3.0]])
    # 1 bit: levels {0, 3}; 2 bits: levels {0, 1, 2, 3}
    assert torch.allclose(pseudo_quantize(x, 1), torch.tensor([[0.0, 0.0, 0.0, 3.0]]))
    assert torch.allclose(pseudo_quantize(x, 2), torch.tensor([[0.0, 0.0, 1.0, 3.0]]))
    assert torch.equal(pseudo_quantize(x, 16), x)
    constant = torch.full((1, 3), 2.5)
    assert torch.equal(pseudo_quantize(constant, 4), constant)  # range 0 counts as 1


@FAST
@given(
    seed=st.integers(0, 10_000),
    cols=st.integers(1, 40),
    k=st.integers(1, 40),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_kth_largest_is_the_kth_value_of_a_top_k(
    seed: int, cols: int, k: int, dtype: torch.dtype
) -> None:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(-3, 4, (2, 3, cols), generator=generator).to(dtype)  # ties
    values[0, 0, 0] = float("-inf")  # ineligible entries are -inf
    k = min(k, cols)
    before = values.clone()
    expected = torch.topk(values, k, dim=-1).values[..., -1:]
    assert torch.equal(kth_largest(values, k), expected)
    assert torch.equal(values, before)  # the input is left as it was


def test_kth_largest_takes_torch_topk_off_the_cpu() -> None:
    """numpy serves CPU tensors only: on any other device no value leaves it (meta has none)."""
    values = torch.empty(2, 3, 50, device="meta")
    kth = kth_largest(values, 7)
    assert kth.device.type == "meta" and kth.shape == (2, 3, 1)


@FAST
@given(
    seed=st.integers(0, 10_000),
    cols=st.sampled_from([1, 2, 5, 64, 1000]),
    rows=st.integers(0, 6),
    density=st.floats(0.0, 1.0),
)
def test_both_sample_select_paths_take_the_smallest_keys(
    seed: int, cols: int, rows: int, density: float
) -> None:
    """The CPU path (numpy introselect) and the one other devices take (bucket histogram) agree
    with the definition, including rows that draw nothing and rows that draw everything."""
    generator = torch.Generator().manual_seed(seed)
    eligible = torch.rand(2, rows, cols, generator=generator) < density
    available = eligible.sum(-1)
    counts = available.double() * torch.rand(2, rows, generator=generator, dtype=torch.float64)
    counts = counts.long()
    if rows:
        counts[1, 0] = available[1, 0]
    noise = torch.rand(eligible.shape, generator=generator, dtype=torch.float64)
    expected = sorted_sample(eligible, counts, noise)
    assert torch.equal(_smallest_keys(eligible, counts, noise, cols), expected)
    assert torch.equal(_histogram_rows(eligible, counts, noise, cols), expected)


def test_cpu_sample_select_breaks_ties_to_the_lower_index() -> None:
    """Equal keys at a row's boundary: exactly `counts` entries, the lower indices first."""
    eligible = torch.tensor([[True, True, False, True, True, True]])
    noise = torch.tensor([[0.5, 0.25, 0.0, 0.25, 0.25, 0.75]], dtype=torch.float64)
    chosen = _smallest_keys(eligible, torch.tensor([2]), noise, 6)
    assert chosen.tolist() == [[False, True, False, True, False, False]]
