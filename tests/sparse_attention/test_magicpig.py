"""MagicPIG's bit-sliced collision counting against the definition (per-table code equality),
and the bucket index against the bit-sliced test."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_attention_hub.sparse_attention import (
    MagicPigConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    SparseState,
    sparse_attention_forward,
)
from sparse_attention_hub.sparse_attention.maskers import magicpig as magicpig_module
from sparse_attention_hub.sparse_attention.maskers.lsh_index import (
    BucketIndex,
    KeyBits,
    bit_major,
    colliding,
    colliding_indexed,
)

FAST = settings(max_examples=25, deadline=None)


def collisions_by_definition(
    query_signs: torch.Tensor, key_signs: torch.Tensor, bits: int, matches: int
) -> torch.Tensor:
    """query `(B, G, R, T*K)`, keys `(B, G, N, T*K)` bool -> `(B, G, R, N)`: tables whose K
    bits all agree, at least `matches` of them."""
    q = query_signs.unflatten(-1, (-1, bits))[:, :, :, None]
    k = key_signs.unflatten(-1, (-1, bits))[:, :, None]
    equal_tables = (q == k).all(dim=-1).sum(dim=-1)
    return equal_tables >= matches


@FAST
@given(
    seed=st.integers(0, 10_000),
    tables=st.integers(1, 9),
    bits=st.sampled_from([1, 2, 3, 10, 64]),
    keys=st.integers(1, 200),
    matches=st.sampled_from([1, 2]),
    budget=st.sampled_from([1, 1 << 30]),  # 1 byte: one table per block
)
def test_colliding_matches_per_table_code_equality(
    seed: int, tables: int, bits: int, keys: int, matches: int, budget: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    width = tables * bits
    key_signs = torch.rand(1, 2, keys, width, generator=generator) < 0.5
    query_signs = torch.rand(1, 2, 3, width, generator=generator) < 0.5
    # some keys copy a query's code in some tables, so collisions happen even for large K
    copied = torch.rand(1, 2, keys, tables, generator=generator) < 0.3
    source = query_signs[:, :, :1].unflatten(-1, (tables, bits))
    key_signs = torch.where(
        copied[..., None], source, key_signs.unflatten(-1, (tables, bits))
    ).flatten(-2)
    key_bits = KeyBits.empty(key_signs, width).extend(bit_major(key_signs, bits))
    got = colliding(query_signs, key_bits.words(), bits, matches, budget)[..., :keys]
    assert torch.equal(got, collisions_by_definition(query_signs, key_signs, bits, matches))


@FAST
@given(seed=st.integers(0, 10_000), steps=st.lists(st.integers(1, 70), min_size=1, max_size=6))
def test_key_bits_extended_piece_by_piece_and_cropped_equal_one_packing(
    seed: int, steps: list[int]
) -> None:
    generator = torch.Generator().manual_seed(seed)
    total = sum(steps)
    signs = torch.rand(1, 2, total, 5, generator=generator) < 0.5
    whole = KeyBits.empty(signs, 5).extend(signs)
    pieces = KeyBits.empty(signs, 5)
    done = 0
    for step in steps:
        pieces = pieces.extend(signs[:, :, done : done + step])
        done += step
    assert pieces.length == whole.length == total
    assert torch.equal(pieces.words(), whole.words())
    # crop into the middle of a byte, extend with other keys: the dropped keys leave no trace
    keep = total // 3
    cropped = pieces.crop(keep)
    other = torch.rand(1, 2, total - keep, 5, generator=generator) < 0.5
    again = (cropped or KeyBits.empty(signs, 5)).extend(other)
    fresh = KeyBits.empty(signs, 5).extend(torch.cat([signs[:, :, :keep], other], dim=2))
    assert torch.equal(again.words(), fresh.words())


@FAST
@given(
    seed=st.integers(0, 10_000),
    bits=st.integers(1, 12),
    tables=st.integers(1, 6),
    steps=st.lists(st.integers(1, 90), min_size=1, max_size=5),
    cut=st.floats(0.0, 1.0),
)
def test_key_codes_give_the_bits_a_bit_buffer_holds(
    seed: int, bits: int, tables: int, steps: list[int], cut: float
) -> None:
    """Key bits kept as codes alone (CPU) hand out the words a bit buffer of the same signs
    holds, from any word on, after piecewise extension and a crop; and turn into that buffer."""
    generator = torch.Generator().manual_seed(seed)
    width, total = bits * tables, sum(steps)
    signs = bit_major(torch.rand(2, 3, total, width, generator=generator) < 0.5, bits)
    coded, plain = KeyBits.empty(signs, width, 8, code_bits=bits), KeyBits.empty(signs, width, 8)
    assert coded.buffer is None and coded.heads == plain.heads == (2, 3)
    done = 0
    for step in steps:  # past the room of 8 keys: the codes grow as the buffer does
        coded = coded.extend(signs[:, :, done : done + step])
        plain = plain.extend(signs[:, :, done : done + step])
        done += step
    for first in range(-(-total // 64)):
        assert torch.equal(coded.words(first), plain.words(first))
    keep = max(1, round(cut * total))
    cropped, other = coded.crop(keep), signs[:, :, : total - keep].flip(2)
    assert cropped is not None
    again, fresh = cropped.extend(other), plain.crop(keep)
    assert fresh is not None
    assert torch.equal(again.words(), fresh.extend(other).words())
    assert torch.equal(again.without_codes().words(), again.words())
    assert again.without_codes().codes is None


@FAST
@given(
    seed=st.integers(0, 10_000),
    bits=st.integers(1, 12),
    tables=st.integers(1, 20),
    keys=st.integers(1, 300),
    indexed=st.floats(0.0, 1.0),
    rows=st.integers(1, 8),
    matches=st.sampled_from([1, 2]),
    tables_per_block=st.integers(1, 4),
    budget=st.sampled_from([1, 2000, 1 << 30]),  # small: buckets expanded in many blocks
)
def test_bucket_index_selects_what_the_bit_sliced_test_selects(
    seed: int,
    bits: int,
    tables: int,
    keys: int,
    indexed: float,
    rows: int,
    matches: int,
    tables_per_block: int,
    budget: int,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    width = tables * bits
    key_signs = torch.rand(2, 3, keys, width, generator=generator) < 0.5
    query_signs = torch.rand(2, 3, rows, width, generator=generator) < 0.5
    copied = torch.rand(2, 3, keys, tables, generator=generator) < 0.4
    source = query_signs[:, :, :1].unflatten(-1, (tables, bits))
    key_signs = torch.where(
        copied[..., None], source, key_signs.unflatten(-1, (tables, bits))
    ).flatten(-2)
    key_bits = KeyBits.empty(key_signs, width, code_bits=bits)
    for start in range(0, keys, 70):  # extended piece by piece, as decode steps do
        key_bits = key_bits.extend(bit_major(key_signs[:, :, start : start + 70], bits))
    length = round(indexed * keys)  # keys [length, keys) form the tail
    index = BucketIndex.build(key_bits, length, tables_per_block)
    got = colliding_indexed(query_signs, key_bits, index, bits, matches, budget)
    expected = colliding(query_signs, key_bits.words(), bits, matches, 1 << 30)[..., :keys]
    assert torch.equal(got, expected)


def _decode_two_questions(
    config: ResearchAttentionConfig, keys: torch.Tensor
) -> tuple[list[torch.Tensor], set[int]]:
    """Outputs of two questions over one context, each a prefill of 5 queries and decode steps
    adding one key a call, the state cropped back to the context in between; and the lengths
    the bucket index had."""
    generator = torch.Generator().manual_seed(3)
    context, steps = 200, 60  # 5 + 60 keys past the index: rebuilt once past 200 / 4
    queries = torch.randn(1, 4, keys.shape[2], keys.shape[3], generator=generator)
    state = SparseState()
    outputs, lengths = [], set()
    for question in range(2):
        state.crop(context)
        state.begin_question("sample", question)
        start = context + 5
        for stop in [start, *range(start + 1, start + steps)]:
            rows = slice(stop - 5 if stop == start else stop - 1, stop)
            key = keys[:, :, :stop]
            outputs.append(_layer_1_call(queries[:, :, rows], key, config, state))
            lengths |= {e.length for e in state.layer(1).values() if isinstance(e, BucketIndex)}
    return outputs, lengths


def _layer_1_call(
    queries: torch.Tensor,
    keys: torch.Tensor,
    config: ResearchAttentionConfig,
    state: SparseState,
    memory_mib: int | None = None,
) -> torch.Tensor:
    """One sparse call of layer 1 with `keys` as keys and values."""
    extra = {} if memory_mib is None else {"memory_mib": memory_mib}
    return sparse_attention_forward(
        queries, keys, keys, None, 0.125, layer_idx=1, config=config, state=state, **extra
    )


@pytest.mark.parametrize(("transform", "matches"), [("mips", 1), ("none", 2)])
def test_masker_with_the_bucket_index_equals_the_bit_sliced_masker(
    transform: str, matches: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    magicpig = MagicPigConfig(lsh_l=12, lsh_k=3, transform=transform, min_table_matches=matches)
    config = ResearchAttentionConfig([SinkMaskerConfig(sink_size=2), magicpig])
    keys = torch.randn(1, 2, 300, 16, generator=torch.Generator().manual_seed(4))
    indexed, lengths = _decode_two_questions(config, keys)
    assert 200 in lengths and max(lengths) > 200  # built over the context, rebuilt in decode
    monkeypatch.setattr(magicpig_module, "MAX_BITS", 0)  # every call bit-sliced
    bit_sliced, no_index = _decode_two_questions(config, keys)
    assert not no_index
    assert all(torch.equal(a, b) for a, b in zip(indexed, bit_sliced, strict=True))


def _calls_at_1_mib(
    config: ResearchAttentionConfig, keys: torch.Tensor
) -> tuple[list[torch.Tensor], list[bool]]:
    """Outputs of a question prefill at 1000 keys and a call at 1400 keys (1 MiB budget), and
    whether the state kept key codes after each."""
    queries = torch.randn(1, 4, 1400, 16, generator=torch.Generator().manual_seed(5))
    state = SparseState()
    state.begin_question("sample", 0)
    outputs, kept = [], []
    for rows in [slice(995, 1000), slice(1399, 1400)]:
        key = keys[:, :, : rows.stop]
        outputs.append(_layer_1_call(queries[:, :, rows], key, config, state, memory_mib=1))
        entries = state.layer(1).values()
        kept.append(any(isinstance(e, KeyBits) and e.codes is not None for e in entries))
    return outputs, kept


def test_codes_and_index_are_dropped_past_their_share_of_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 2 KV heads x 12 tables x (2 + 2) bytes a key: 1000 keys fit 1 MiB / 8, 1400 do not
    config = ResearchAttentionConfig([MagicPigConfig(lsh_l=12, lsh_k=3)])
    keys = torch.randn(1, 2, 1400, 16, generator=torch.Generator().manual_seed(6))
    indexed, kept = _calls_at_1_mib(config, keys)
    assert kept == [True, False]
    monkeypatch.setattr(magicpig_module, "MAX_BITS", 0)
    bit_sliced, _ = _calls_at_1_mib(config, keys)
    assert all(torch.equal(a, b) for a, b in zip(indexed, bit_sliced, strict=True))
