"""How MagicPIG keeps its keys' LSH signatures: bit-sliced bits (`KeyBits`) and a bucket index
of their table codes (`BucketIndex`), so a query's colliding keys are read from one bucket per
table (docs/methods.md §6.10).

The bit-sliced test (`magicpig.colliding`) costs rows x tables x bits x N / 64 word operations per
call. Grouping each (batch, KV head, table)'s keys by their code makes a table's test one bucket
read, so a call costs rows x tables lookups plus the (row, key) hits, and the selection is the same
set of keys. CPU only: the number of hits is a data-dependent size, read back to the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

MAX_BITS = 12
"""Widest code indexed: the bucket offsets take 2**bits + 1 int32 per table (16 KiB at 12)."""
BUILD_BYTES = 28
"""Working bytes per (batch, KV head, table, key) while building an index."""
_PAIR_BYTES = 64  # per (row, key) hit while buckets are expanded: a few int64 index tensors


def table_codes(signs: torch.Tensor, dim: int) -> torch.Tensor:
    """Codes sum_b signs[b] << b of bool `signs` whose bits lie on `dim`, int16 (bits <= 15).

    Few signs (a call's queries): one product and sum (fewer ops); many (building an index):
    one in-place shift-or per bit, 4x faster there than the int16 product of every sign."""
    bits = signs.shape[dim]
    if signs.numel() <= 1 << 16:
        weights = 1 << torch.arange(bits, dtype=torch.int16, device=signs.device)
        weights = weights.view(bits, *[1] * (signs.dim() - 1 - dim % signs.dim()))
        return (signs.to(torch.int16) * weights).sum(dim, dtype=torch.int16)
    code = torch.zeros(signs.select(dim, 0).shape, dtype=torch.int16, device=signs.device)
    for bit in range(bits):
        code.bitwise_or_(signs.select(dim, bit).to(torch.int16).bitwise_left_shift_(bit))
    return code


@dataclass(frozen=True)
class KeyBits:
    """SimHash bits of keys [0, length), bit-sliced: `buffer` `(B, H_kv, width,
    capacity)` uint8 holds key j's sign column c at byte j // 8, bit j % 8 of row c, so one int64
    word covers 64 keys and a table's collisions with a query are a few word operations
    (docs/methods.md §6.10). MagicPIG stores the columns bit-major (`magicpig.bit_major`).

    `capacity` is a multiple of 8 bytes with room to spare (a decode step writes one byte);
    bytes past `length` keys belong to no live entry and are never read as keys.

    With `code_bits` > 0 (on CPU) `codes` `(B, H_kv, capacity * 8, tables)` int16 also holds
    each key's table codes (`table_codes`), key-major, made from the same signs as its bits:
    the bucket index is built from them and the keys past it are compared by code, reading
    a key's codes in one place (a key's bits lie in `width` rows, one byte each, capacity apart).
    """

    buffer: torch.Tensor
    length: int
    codes: torch.Tensor | None = None
    code_bits: int = 0

    def crop(self, length: int) -> KeyBits | None:
        if length >= self.length:
            return self
        return KeyBits(self.buffer, length, self.codes, self.code_bits) if length > 0 else None

    def words(self) -> torch.Tensor:
        """The bits of the live keys as int64 words, `(B, H_kv, width, words)`."""
        used = -(-self.length // 64) * 8
        return self.buffer[..., :used].view(torch.int64)

    def key_codes(self, start: int, stop: int) -> torch.Tensor:
        """Codes of keys [start, stop), `(B, H_kv, stop - start, tables)` int16 (`code_bits`)."""
        if self.codes is None:
            raise ValueError("these key bits keep no codes (code_bits 0)")
        return self.codes[:, :, start:stop]

    def extend(self, signs: torch.Tensor) -> KeyBits:
        """These keys followed by `signs` `(B, H_kv, new, width)` bool, bit-major; reuses
        the buffers while they have room."""
        start, total = self.length, self.length + signs.shape[-2]
        first, stop = start // 8, -(-total // 8)
        buffer, codes = self.buffer, self.codes
        if stop > buffer.shape[-1]:
            buffer = buffer.new_zeros((*buffer.shape[:-1], _capacity(stop)))
            kept_bytes = min(first + 1, self.buffer.shape[-1])
            buffer[..., :kept_bytes] = self.buffer[..., :kept_bytes]
            if codes is not None:
                codes = codes.new_empty((*codes.shape[:2], buffer.shape[-1] * 8, codes.shape[-1]))
                codes[:, :, :start] = self.key_codes(0, start)
        shifted = torch.zeros(
            (*signs.shape[:2], signs.shape[-1], (stop - first) * 8),
            dtype=torch.uint8,
            device=signs.device,
        )
        shifted[..., start - first * 8 : total - first * 8] = signs.transpose(-1, -2)
        powers = 2 ** torch.arange(8, dtype=torch.uint8, device=signs.device)
        packed = (shifted.view(*shifted.shape[:-1], -1, 8) * powers).sum(-1, dtype=torch.uint8)
        kept = (1 << (start % 8)) - 1  # bits of the keys before `start` in the first byte
        packed[..., 0] |= buffer[..., first] & kept
        buffer[..., first:stop] = packed
        if codes is not None:  # bit-major columns: bit b of table t at b * tables + t
            codes[:, :, start:total] = table_codes(signs.unflatten(-1, (self.code_bits, -1)), -2)
        return KeyBits(buffer, total, codes, self.code_bits)

    @classmethod
    def empty(cls, like: torch.Tensor, width: int, keys: int = 0, code_bits: int = 0) -> KeyBits:
        """No keys yet, with room for `keys` (so filling them never copies the buffers); codes
        of `code_bits` bits are kept too when `code_bits` > 0."""
        batch, kv_heads = like.shape[:2]
        capacity = _capacity(-(-keys // 8))
        buffer = torch.zeros(
            batch, kv_heads, width, capacity, dtype=torch.uint8, device=like.device
        )
        codes = None
        if code_bits > 0:
            shape = (batch, kv_heads, capacity * 8, width // code_bits)
            codes = torch.empty(shape, dtype=torch.int16, device=like.device)
        return cls(buffer, 0, codes, code_bits)


def _capacity(used_bytes: int) -> int:
    """Buffer bytes for `used_bytes`: 1/8 spare (decode steps append in place), whole words."""
    return -(-(used_bytes + used_bytes // 8 + 64) // 8) * 8


@dataclass(frozen=True)
class BucketIndex:
    """Keys [0, length) grouped by code, per (batch, KV head, table).

    `order` `(B, H_kv, tables, length)` int32: the key indices sorted by their code in that
    table; `offsets` `(B, H_kv, tables, 2**bits + 1)` int64: the keys whose code is c are
    `order.view(-1)[offsets[c] : offsets[c + 1]]` (offsets into the flat `order`, so a lookup
    needs no arithmetic on the table's position).
    """

    order: torch.Tensor
    offsets: torch.Tensor
    length: int

    def crop(self, length: int) -> BucketIndex | None:
        """Kept while its keys are: keys past `length` never were in it."""
        return self if length >= self.length else None

    @classmethod
    def build(cls, key_bits: KeyBits, length: int, tables_per_block: int) -> BucketIndex:
        """The index of keys [0, length) from the codes `key_bits` keeps (made from the same
        signs as its bits, so the two never disagree); tables go `tables_per_block` at a time."""
        codes = key_bits.key_codes(0, length)
        batch, kv_heads, _, tables = codes.shape
        order = torch.empty(batch, kv_heads, tables, length, dtype=torch.int32)
        offsets = torch.zeros(batch, kv_heads, tables, (1 << key_bits.code_bits) + 1)
        offsets = offsets.to(torch.int64)
        for start in range(0, tables, max(1, tables_per_block)):
            stop = min(start + max(1, tables_per_block), tables)
            block = codes[..., start:stop].transpose(-1, -2).contiguous()  # keys last
            # numpy's stable sort of int16 is a radix sort: 15x faster than torch.sort here
            order[:, :, start:stop] = torch.from_numpy(
                np.argsort(block.numpy(), axis=-1, kind="stable")
            )
            offsets[:, :, start:stop, 1:] = _counts(block, key_bits.code_bits).cumsum(-1)
        first = torch.arange(batch * kv_heads * tables).view(batch, kv_heads, tables, 1)
        return cls(order, offsets.add_(first * length), length)

    def lookup(
        self, query_codes: torch.Tensor, matches: int, budget: int, width: int
    ) -> torch.Tensor:
        """Keys [0, length) in the bucket of each query row in >= `matches` tables.

        query_codes `(B, H_kv, rows, tables)` (`table_codes`); returns bool `(B, H_kv, rows,
        width)`, False from column `length` on. Each (row, table) bucket is a segment of `order`;
        segments are expanded into (row, key) pairs in blocks of at most `budget` bytes.
        """
        batch, kv_heads, rows, tables = query_codes.shape
        codes = query_codes.transpose(-1, -2).long()  # (B, H_kv, tables, rows): one segment each
        source = self.offsets.gather(-1, codes).view(-1)  # segment's first entry in `order`
        sizes = self.offsets.gather(-1, codes.add_(1)).view(-1).sub_(source)
        row_starts = torch.arange(0, batch * kv_heads * rows * width, width)  # rows of hits
        target = row_starts.view(batch, kv_heads, 1, rows).expand(-1, -1, tables, -1).reshape(-1)
        order = self.order.view(-1)
        flat = batch * kv_heads * rows * width
        hits = torch.zeros(flat, dtype=torch.bool if matches == 1 else torch.int32)
        for first, last, total in _blocks(sizes, max(1, budget // _PAIR_BYTES)):
            size = sizes[first:last]
            before = size.cumsum(0).sub_(size)  # pair index of each segment's first key
            at = torch.repeat_interleave(source[first:last] - before, size, output_size=total)
            keys = order.index_select(0, at.add_(torch.arange(total)))
            where = torch.repeat_interleave(target[first:last], size, output_size=total)
            where += keys
            if matches == 1:
                hits[where] = True
            else:
                hits.index_put_((where,), torch.ones((), dtype=torch.int32), accumulate=True)
        selected = hits if matches == 1 else hits >= matches
        return selected.view(batch, kv_heads, rows, width)


def _counts(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Keys per code along the last dim of `codes` int16: int64 `(..., 2**bits)`."""
    lead = codes.shape[:-1]
    groups = int(np.prod(lead))
    keyed = codes.reshape(groups, codes.shape[-1]).to(torch.int64)
    keyed += (torch.arange(groups) << bits).view(groups, 1)
    counts = np.bincount(keyed.view(-1).numpy(), minlength=groups << bits)
    return torch.from_numpy(counts).view(*lead, 1 << bits)


def _blocks(sizes: torch.Tensor, most: int) -> Iterator[tuple[int, int, int]]:
    """Runs [first, last) of segments holding at most `most` entries in all (or one segment),
    with their total; reads the sizes on the host once per run."""
    count = int(sizes.shape[0])
    total = int(sizes.sum())
    if total <= most:  # one run (a decode step): no cumulative sums
        yield 0, count, total
        return
    ends = sizes.cumsum(0)
    first, done = 0, 0
    while first < count:
        last = max(first + 1, int(torch.searchsorted(ends, done + most, right=True)))
        total = int(ends[last - 1]) - done
        yield first, last, total
        first, done = last, done + total
