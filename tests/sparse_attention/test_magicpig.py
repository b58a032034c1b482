"""MagicPIG's bit-sliced collision counting against the definition (per-table code equality)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_attention_hub.sparse_attention.maskers.magicpig import KeyBits, bit_major, colliding

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
