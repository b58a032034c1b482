"""The fast paths compute what the plain definitions compute (docs/methods.md §5.1, §6.4):
the sort-free top-p threshold, the one-op union of a deterministic selection, the softmax without
a division by p = 1, the gathered path with known scores, and the cost rule that picks a path."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_attention_hub.sparse_attention import (
    MASKERS,
    LocalMaskerConfig,
    OracleTopKConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    SparseState,
    sparse_attention_forward,
    weighted_attention,
)
from sparse_attention_hub.sparse_attention import attention as attention_module
from sparse_attention_hub.sparse_attention import forward as forward_module
from sparse_attention_hub.sparse_attention.attention import allowed_entries, gathered_attention
from sparse_attention_hub.sparse_attention.mask import union
from sparse_attention_hub.sparse_attention.maskers import base as masker_base
from sparse_attention_hub.sparse_attention.maskers.base import MaskerConfig, add_selected
from sparse_attention_hub.sparse_attention.maskers.hashattention import agreement, pack_signs
from sparse_attention_hub.sparse_attention.maskers.oracle_topp import top_p_select

from .helpers import Shape, inputs_for, qkv, shapes
from .test_chunking import configs, masker_of, run_calls

FAST = settings(max_examples=40, deadline=None)


def sorted_top_p(
    probs: torch.Tensor, eligible: torch.Tensor, covered: torch.Tensor, top_p: float
) -> torch.Tensor:
    """The definition: a stable descending sort, taken while the mass before a key is < top_p,
    plus every key tied with the last one taken."""
    ranked, order = probs.masked_fill(~eligible, -1.0).sort(dim=-1, descending=True, stable=True)
    mass_before = covered + ranked.clamp_min(0.0).cumsum(dim=-1) - ranked.clamp_min(0.0)
    take_sorted = (ranked >= 0) & (mass_before < top_p)
    last = ranked.masked_fill(~take_sorted, float("inf")).amin(dim=-1, keepdim=True)
    take = torch.zeros_like(eligible).scatter(-1, order, take_sorted)
    return take | (eligible & (probs == last) & take_sorted.any(dim=-1, keepdim=True))


@FAST
@given(
    rows=st.integers(1, 4),
    n_keys=st.integers(1, 60),
    seed=st.integers(0, 10_000),
    levels=st.sampled_from([2, 5, 64, 1024]),
    top_p=st.sampled_from([0.05, 0.25, 0.5, 0.75, 0.9, 0.99, 1 - 2**-20]),
    covered_share=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_top_p_threshold_equals_the_sorted_cumulative_sum(
    rows: int, n_keys: int, seed: int, levels: int, top_p: float, covered_share: float
) -> None:
    # dyadic probabilities (multiples of 2^-16, few distinct values: ties) make every partial
    # sum exact, so the two summation orders must agree bit for bit
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randint(0, levels, (rows, n_keys), generator=generator).float()
    weights[:, 0] += 1  # no all-zero row
    scale = 2.0 ** -(weights.sum(-1, keepdim=True).log2().ceil() + 1)
    probs = weights * scale  # rows sum to <= 1/2
    eligible = torch.rand(rows, n_keys, generator=generator) < 0.8
    covered = torch.full((rows, 1), covered_share)
    expected = sorted_top_p(probs, eligible, covered, top_p)
    assert torch.equal(top_p_select(probs, eligible, covered, top_p), expected)


def test_top_p_threshold_takes_zero_probability_keys_only_when_all_mass_is_short() -> None:
    probs = torch.tensor([[0.5, 0.0, 0.25, 0.0]])
    eligible = torch.ones_like(probs, dtype=torch.bool)
    none_covered = torch.zeros(1, 1)
    taken = top_p_select(probs, eligible, none_covered, 0.6)
    assert taken.tolist() == [[True, False, True, False]]
    assert top_p_select(probs, eligible, none_covered, 0.8).all()  # 0.75 < 0.8: everything
    assert not top_p_select(probs, eligible, torch.full((1, 1), 0.9), 0.8).any()


@FAST
@given(seed=st.integers(0, 10_000), n_keys=st.integers(1, 30))
def test_add_selected_is_the_union(seed: int, n_keys: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    previous = torch.rand(2, 3, n_keys, generator=generator)
    previous[previous < 0.3] = 0.0
    previous[previous > 0.8] = 1.0
    selected = torch.rand(2, 3, n_keys, generator=generator) < 0.5
    assert torch.equal(add_selected(previous, selected), union(previous, selected))


@FAST
@given(seed=st.integers(0, 10_000), q_len=st.integers(1, 4), k_len=st.integers(4, 30))
def test_a_unit_mask_skips_only_a_division_by_one(seed: int, q_len: int, k_len: int) -> None:
    q, k, v = qkv(Shape(1, 2, 2, q_len, k_len, 8), seed)
    allowed, _ = allowed_entries(None, q_len, k_len, q.device)
    generator = torch.Generator().manual_seed(seed)
    mask = (torch.rand(1, 4, q_len, k_len, generator=generator) < 0.4).float()
    plain, plain_fallback = weighted_attention(q, k, v, allowed, 0.3, mask)
    unit, unit_fallback = weighted_attention(q, k, v, allowed, 0.3, mask, unit_mask=True)
    assert torch.equal(plain, unit) and torch.equal(plain_fallback, unit_fallback)


@FAST
@given(
    shape=shapes(max_keys=70),
    seed=st.integers(0, 10_000),
    known_scores=st.booleans(),
    with_bias=st.booleans(),
    unit=st.booleans(),
    in_buffer=st.booleans(),
)
def test_both_gathered_layouts_equal_whole_rows(
    shape: Shape,
    seed: int,
    known_scores: bool,
    with_bias: bool,
    unit: bool,
    in_buffer: bool,
) -> None:
    """The CPU layout (each row's selected entries, summed by `embedding_bag`) and the padded
    one (each row's keys padded to the limit, any device) give the whole-row softmax of §5."""
    q, k, v = qkv(shape, seed=seed)
    if in_buffer:  # K and V as an appending cache hands them out: views of a longer buffer
        k = torch.cat([k, torch.zeros_like(k)], dim=2)[:, :, : shape.k_len]
        v = torch.cat([v, torch.zeros_like(v)], dim=2)[:, :, : shape.k_len]
    generator = torch.Generator().manual_seed(seed + 1)
    full = (shape.batch, shape.heads, shape.q_len, shape.k_len)
    allowed, _ = allowed_entries(None, shape.q_len, shape.k_len, q.device)
    own = torch.eye(shape.k_len, dtype=torch.bool)[shape.k_len - shape.q_len :]  # own position
    selected = allowed & ((torch.rand(full, generator=generator) < 0.3) | own)
    values = torch.rand(full, generator=generator).clamp_min_(0.05)
    mask = selected.float() if unit else selected * values
    bias = None
    if with_bias:
        bias = torch.randn(shape.batch, 1, shape.q_len, shape.k_len, generator=generator)
    scores = None
    if known_scores:
        scores = attention_module.attention_logits(q, k, 1.0)
    limit = int(selected.sum(dim=-1).max())
    whole, _ = weighted_attention(q, k, v, allowed, 0.3, mask, bias, unit_mask=unit)
    whole = whole.transpose(1, 2)
    ragged = gathered_attention(q, k, v, selected, mask, 0.3, bias, limit, scores, unit)
    padded = attention_module._padded(q, k, v, selected, mask, 0.3, bias, limit, scores, unit)
    torch.testing.assert_close(ragged, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(padded, whole, rtol=1e-5, atol=1e-6)


def test_gathered_rows_of_no_allowed_key_are_zero_in_both_layouts() -> None:
    """A row without any allowed key (all of it padding) gets 0 from either layout, as the
    padded one always gave; bf16 values take the padded layout (float32 math throughout)."""
    q, k, v = qkv(Shape(1, 1, 3, 2, 9, 4), seed=5)
    selected = torch.zeros(1, 3, 2, 9, dtype=torch.bool)
    selected[:, :, 1, [0, 4, 8]] = True
    mask = selected.float() * 0.5
    outputs = [
        gathered_attention(q, k, v, selected, mask, 0.5, None, 3),
        attention_module._padded(q, k, v, selected, mask, 0.5, None, 3, None, False),
        gathered_attention(q, k, v.bfloat16(), selected, mask, 0.5, None, 3),
    ]
    for output in outputs:
        assert output.dtype == torch.float32
        assert torch.equal(output[:, :, 0], torch.zeros(1, 3, 4))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outputs[2], outputs[1], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("name", MASKERS.names())
def test_gathered_path_for_every_call_equals_whole_rows(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the cost rule would send the question prefill to whole rows: force the gathered path
    monkeypatch.setattr(forward_module, "SPAN_FRACTION", 0.0)  # sink / local would span
    monkeypatch.setattr(forward_module, "GATHERED_KV_ROWS_PER_KEY", float("inf"))
    monkeypatch.setattr(forward_module, "GATHERED_V_ROWS_PER_KEY", float("inf"))
    for config in configs(masker_of(name, tmp_path)):
        fast = run_calls(config)
        monkeypatch.setattr(forward_module, "GATHER_FRACTION", 0.0)  # whole rows only
        slow = run_calls(config)
        monkeypatch.setattr(forward_module, "GATHER_FRACTION", 0.25)
        for a, b in zip(fast, slow, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "window",
    [
        [SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=4)],
        [LocalMaskerConfig(window_size=0.1), SinkMaskerConfig(sink_size=0.05)],
        [SinkMaskerConfig(sink_size=3), LocalMaskerConfig(window_size=30)],  # ranges overlap
        [LocalMaskerConfig(window_size=1)],
    ],
)
@pytest.mark.parametrize("query_chunk", [None, 1, 4])
def test_spanned_path_equals_whole_rows(
    window: list[MaskerConfig], query_chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ResearchAttentionConfig(window)
    spanned = run_calls(config, query_chunk=query_chunk)
    monkeypatch.setattr(forward_module, "SPAN_FRACTION", 0.0)
    monkeypatch.setattr(forward_module, "GATHER_FRACTION", 0.0)  # whole rows only
    whole = run_calls(config, query_chunk=query_chunk)
    for a, b in zip(spanned, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (90, 90, [(0, 2), (87, 91)]),  # decode: sink 2 + the 4 keys up to position 90
        (60, 90, [(0, 2), (57, 91)]),  # a question: one window spanning all its rows
        (3, 5, [(0, 6)]),  # sink and window overlap: one range
    ],
)
def test_key_span_merges_the_maskers_columns(
    first: int, last: int, expected: list[tuple[int, int]]
) -> None:
    config = ResearchAttentionConfig(
        [SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=4)]
    )
    assert forward_module.key_span(config, 200, first, last) == expected
    topk = ResearchAttentionConfig([SinkMaskerConfig(sink_size=2), OracleTopKConfig(heavy_size=3)])
    assert forward_module.key_span(topk, 200, first, last) is None  # top-k may pick any key
    assert forward_module.key_span(config, 20, 3, 19) is None  # more than half of the keys


@pytest.mark.parametrize("name", [n for n in MASKERS.names() if MASKERS.get(n).kind == "fixed"])
def test_state_caches_do_not_change_results(name: str, tmp_path: Path) -> None:
    """Key-side caches (Quest pages, hash signatures, channel labels) extended call by call give
    what a fresh computation over all keys gives."""
    config = ResearchAttentionConfig([masker_of(name, tmp_path)])
    q, k, v = qkv(Shape(1, 2, 3, 12, 96, 8), seed=4)
    shared = SparseState()
    shared.begin_question("s", 0)
    for step, k_len in enumerate(range(85, 97)):
        query = q[:, :, step : step + 1]
        fresh = SparseState()
        fresh.begin_question("s", 0)
        outputs = [
            sparse_attention_forward(
                query,
                k[:, :, :k_len],
                v[:, :, :k_len],
                None,
                0.35,
                layer_idx=1,
                config=config,
                state=state,
            )
            for state in (shared, fresh)
        ]
        torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-6)


def gathered_calls(
    monkeypatch: pytest.MonkeyPatch,
    q_len: int,
    config: ResearchAttentionConfig,
    path: str = "gathered_attention",
    module: ModuleType = forward_module,
) -> int:
    """How often one call of `q_len` queries over 512 keys (3 query heads per KV head) takes
    the gathered path (or calls the function `path` of `module`)."""
    calls = []
    real = getattr(module, path)

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[no-any-return]

    with monkeypatch.context() as patched:  # undone on leaving; the caller's patches stay
        patched.setattr(module, path, counting)
        q, k, v = qkv(Shape(1, 1, 3, q_len, 512, 8), seed=1)
        state = SparseState()
        state.begin_question("s", 0)
        sparse_attention_forward(q, k, v, None, 0.35, layer_idx=0, config=config, state=state)
    return len(calls)


def test_the_path_is_picked_by_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    window = [SinkMaskerConfig(sink_size=4), LocalMaskerConfig(window_size=8)]
    streaming = ResearchAttentionConfig([*window, LocalMaskerConfig(window_size=0.1)])
    topk = ResearchAttentionConfig([*window, OracleTopKConfig(heavy_size=0.1)])  # bound 63
    wide = ResearchAttentionConfig([*window, OracleTopKConfig(heavy_size=0.5)])  # bound 268
    # on CPU every chunk whose mask keeps at most a quarter of the entries gathers: V rows are
    # read where they lie, whatever Q
    for q_len in (1, 4, 16):
        assert gathered_calls(monkeypatch, q_len, topk) == 1
        assert gathered_calls(monkeypatch, q_len, wide) == 0  # half the keys: whole rows
    # sink and local keys lie in two column ranges: the softmax runs over them, whatever Q
    for q_len in (1, 4, 16):
        assert gathered_calls(monkeypatch, q_len, streaming) == 0
        assert gathered_calls(monkeypatch, q_len, streaming, "_spanned") == 1
        assert gathered_calls(monkeypatch, q_len, topk, "_spanned") == 0
    monkeypatch.setattr(forward_module, "SPAN_FRACTION", 0.0)  # without it, gathered
    for q_len in (1, 4, 16):
        assert gathered_calls(monkeypatch, q_len, streaming) == 1
    # q . k of the selected entries: from gathered K rows while a chunk is decode-sized
    # (3 * Q * 512 / 4 <= 4 * 512), else from one matmul over whole rows
    assert gathered_calls(monkeypatch, 1, streaming, "attention_logits", masker_base) == 0
    assert gathered_calls(monkeypatch, 16, streaming, "attention_logits", masker_base) == 1


@FAST
@given(seed=st.integers(0, 10_000), bits=st.integers(1, 70), n_keys=st.integers(1, 20))
def test_packed_signatures_agree_like_the_sign_vectors(seed: int, bits: int, n_keys: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(1, 2, 3, bits, generator=generator)
    keys = torch.randn(1, 2, n_keys, bits, generator=generator)
    keys[..., 0] = 0.0  # sign(0) = +1
    signs_q, signs_k = (torch.where(x >= 0, 1.0, -1.0) for x in (queries, keys))
    expected = signs_q @ signs_k.transpose(-1, -2)
    assert torch.equal(agreement(pack_signs(queries), pack_signs(keys), bits), expected)


@pytest.mark.parametrize("name", MASKERS.names())
@pytest.mark.parametrize("k_len", [1, 40])
def test_a_decode_step_masks_as_if_some_entry_were_not_allowed(
    name: str, k_len: int, tmp_path: Path
) -> None:
    """A decode step under a plain causal mask allows every key (`every_allowed`): the maskers
    skip masking by `allowed` and set sink / local columns directly, with the same masks as
    the general path, masker after masker."""
    config = configs(masker_of(name, tmp_path))[1]  # sink 2 + local 4 + the masker
    q, k, v = qkv(Shape(2, 2, 3, 1, k_len, 8), seed=7)
    masks = []
    for every_allowed in (True, False):
        state = SparseState()
        state.begin_question("s", 0)
        inputs = inputs_for(q, k, v, state=state, layer_idx=1, seed=3)
        assert inputs.every_allowed
        inputs = dataclasses.replace(inputs, every_allowed=every_allowed)
        mask = torch.zeros(inputs.allowed.shape)
        steps = []
        for masker in config.masker_configs:
            mask = masker.add_mask(inputs, mask)
            steps.append(mask)
        masks.append(steps)
    for fast, general in zip(*masks, strict=True):
        assert torch.equal(fast, general)
