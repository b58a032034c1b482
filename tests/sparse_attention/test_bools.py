"""The vectorised bool helpers return exactly what the plain torch ops return."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_attention_hub.sparse_attention.attention import EXP_FLOOR, exp_selected
from sparse_attention_hub.sparse_attention.bools import (
    any_last,
    at_least,
    at_most,
    count_last,
    cumcount_last,
    flat_positions,
    neg_inf_unless,
    on_selected,
    set_where,
    to_float,
    unset,
)

FAST = settings(max_examples=40, deadline=None)


def _selection(seed: int, shape: tuple[int, ...], density: float, expand: bool) -> torch.Tensor:
    """A random bool tensor, contiguous or (like `allowed`) expanded from one head."""
    generator = torch.Generator().manual_seed(seed)
    if expand:
        small = torch.rand((1, *shape[1:]), generator=generator) < density
        return small.expand(shape)
    return torch.rand(shape, generator=generator) < density


@FAST
@given(
    seed=st.integers(0, 10_000),
    heads=st.integers(1, 3),
    rows=st.integers(1, 4),
    cols=st.integers(0, 40),
    density=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    expand=st.booleans(),
)
def test_reductions_equal_plain_ops(
    seed: int, heads: int, rows: int, cols: int, density: float, expand: bool
) -> None:
    selection = _selection(seed, (heads, rows, cols), density, expand)
    assert torch.equal(any_last(selection), selection.any(dim=-1))
    assert torch.equal(any_last(selection, keepdim=True), selection.any(dim=-1, keepdim=True))
    assert torch.equal(count_last(selection), selection.sum(dim=-1))
    assert count_last(selection).dtype == torch.int64
    counts = count_last(selection, keepdim=True, dtype=torch.int32)
    assert torch.equal(counts, selection.sum(dim=-1, keepdim=True, dtype=torch.int32))
    assert torch.equal(cumcount_last(selection), selection.cumsum(dim=-1).to(torch.int32))
    assert torch.equal(to_float(selection), selection.float())
    assert torch.equal(to_float(selection, torch.float64), selection.double())
    flat = selection.reshape(-1).nonzero().squeeze(-1)
    assert torch.equal(torch.from_numpy(flat_positions(selection, selection.shape)), flat)
    one_row = selection[:1]  # broadcast to all heads, as `allowed` is
    wide = one_row.expand(selection.shape).reshape(-1).nonzero().squeeze(-1)
    assert torch.equal(torch.from_numpy(flat_positions(one_row, selection.shape)), wide)


@FAST
@given(
    seed=st.integers(0, 10_000),
    rows=st.integers(1, 4),
    cols=st.integers(1, 40),
    density=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    expand=st.booleans(),
)
def test_fills_equal_masked_fill(
    seed: int, rows: int, cols: int, density: float, expand: bool
) -> None:
    generator = torch.Generator().manual_seed(seed + 1)
    keep = _selection(seed, (2, rows, cols), density, expand)
    values = torch.randn(2, rows, cols, generator=generator) * 50
    values[0, 0, 0] = float("-inf")  # an already-disallowed entry stays -inf
    assert torch.equal(neg_inf_unless(values, keep), values.masked_fill(~keep, float("-inf")))
    mask = torch.rand(2, rows, cols, generator=generator)
    mask = mask * (torch.rand(2, rows, cols, generator=generator) < 0.5)  # p in [0, 1]
    before = mask.clone()
    assert torch.equal(set_where(mask, keep), mask.masked_fill(keep, 1.0))
    assert torch.equal(set_where(mask, keep[:1]), mask.masked_fill(keep[:1], 1.0))  # broadcast
    assert torch.equal(mask, before)  # a new tensor: the mask so far is never edited
    mask[0, 0, 0] = -0.0  # both zeros are unset
    before = mask.clone()
    assert torch.equal(unset(mask), mask == 0)
    assert torch.equal(mask, before)


@FAST
@given(
    seed=st.integers(0, 10_000),
    rows=st.integers(1, 4),
    cols=st.integers(0, 40),
    expand=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_comparisons_within_equal_plain_ops(
    seed: int, rows: int, cols: int, expand: bool, dtype: torch.dtype
) -> None:
    generator = torch.Generator().manual_seed(seed + 2)
    within = _selection(seed, (2, rows, cols), 0.7, expand)
    values = torch.randint(-3, 4, (2, rows, cols), generator=generator).to(dtype)  # ties
    if cols:
        values[0, 0, 0] = float("-inf")
        values[-1, -1, -1] = float("nan")
    bound = torch.randint(-3, 4, (2, rows, 1), generator=generator).to(dtype)
    permuted = values.transpose(0, 1).contiguous().transpose(0, 1)  # strides of a draw
    for keys in (values, permuted):
        assert torch.equal(at_most(keys, bound, within), (keys <= bound) & within)
        assert torch.equal(at_least(keys, bound, within), (keys >= bound) & within)
    assert torch.equal(at_most(values, bound, within[:1]), (values <= bound) & within[:1])


def test_exp_selected_is_exp_where_it_does_not_underflow() -> None:
    shifted = torch.tensor([[0.0, -1.0, -50.0, -86.9, -87.5, -120.0, float("-inf"), -3.0]])
    selected = torch.tensor([[True, True, True, True, True, True, True, False]])
    result = exp_selected(shifted.clone(), selected)
    exact = shifted.exp() * selected
    assert torch.equal(result[:, :4], exact[:, :4])
    assert result[0, -1] == 0.0  # unselected
    # below the floor: exp(EXP_FLOOR), within float32 rounding of a row sum >= 1
    floor = torch.tensor(EXP_FLOOR).exp()
    assert torch.all(result[:, 4:7] == floor)
    assert float((result.sum() - exact.sum()).abs()) < 1e-37


@FAST
@given(
    seed=st.integers(0, 10_000),
    heads=st.integers(1, 3),
    rows=st.integers(0, 4),
    cols=st.integers(0, 40),
    density=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    expand=st.booleans(),
)
def test_on_selected_is_the_function_times_the_selection(
    seed: int, heads: int, rows: int, cols: int, density: float, expand: bool
) -> None:
    shape = (2, heads, rows, cols)
    selected = _selection(seed, shape, density, expand)
    values = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))

    def function(x: torch.Tensor) -> torch.Tensor:  # float64 out, like MagicPIG's
        return x.double().arccos_().add_(1.0)

    expected = function(values.clamp(-1, 1)) * to_float(selected, torch.float64)
    result = on_selected(values.clamp(-1, 1), selected, function)
    assert result.dtype == torch.float64 and result.shape == shape
    assert torch.equal(result, expected)


def test_on_selected_off_the_cpu_runs_on_every_entry() -> None:
    """No index is read on other devices (meta holds no values at all)."""
    values = torch.empty(2, 3, 4, device="meta")
    result = on_selected(values, torch.empty(2, 3, 4, dtype=torch.bool, device="meta"), torch.exp)
    assert result.device.type == "meta" and result.shape == (2, 3, 4)
