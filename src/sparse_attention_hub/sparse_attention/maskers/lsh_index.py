"""How MagicPIG keeps and searches its keys' LSH signatures (docs/methods.md §6.10): bit-sliced
bits (`KeyBits`) tested 64 keys a word (`colliding`), and on CPU a bucket index of their table
codes (`BucketIndex`), so a query's colliding keys are read from one bucket per table
(`colliding_indexed`).

The bit-sliced test costs rows x tables x bits x N / 64 word operations per call. Grouping
each (batch, KV head, table)'s keys by their code makes a table's test one bucket read, so a
call costs rows x tables lookups plus the (row, key) hits, and the selection is the same set of
keys. CPU only: the number of hits is a data-dependent size (read in place on CPU; on a GPU it
would be a read back to the host).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from sparse_attention_hub.sparse_attention.bools import as_bytes

MAX_BITS = 12
"""Widest code indexed: the bucket offsets take 2**bits + 1 int64 per table (32 KiB at 12)."""
INDEX_SHARE = 1 / 8
"""Most of the call's memory budget a layer's codes and index may take (they stay in the
state across calls; past it, at long contexts, the bit-sliced test alone runs)."""
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
    (docs/methods.md §6.10). MagicPIG stores the columns bit-major (`bit_major`).

    `capacity` is a multiple of 8 bytes with room to spare (a decode step writes one byte);
    bytes past `length` keys belong to no live entry and are never read as keys.

    With `code_bits` > 0 (on CPU) `codes` `(B, H_kv, capacity * 8, tables)` int16 holds each
    key's table codes (`table_codes`), key-major, and there is no `buffer`: the bucket index is
    built from the codes, keys past it are compared by code, and where bits are needed (a long
    tail, `words`) they are packed from the codes of just those keys. Appending a key then
    writes its codes in one place instead of one byte in each of `width` rows, capacity apart
    (a tenth of a MagicPIG decode step on our CPU).
    """

    buffer: torch.Tensor | None
    length: int
    codes: torch.Tensor | None = None
    code_bits: int = 0

    @property
    def heads(self) -> tuple[int, int]:
        """(B, H_kv)."""
        kept = self.buffer if self.buffer is not None else self.codes
        assert kept is not None
        return int(kept.shape[0]), int(kept.shape[1])

    def crop(self, length: int) -> KeyBits | None:
        if length >= self.length:
            return self
        return KeyBits(self.buffer, length, self.codes, self.code_bits) if length > 0 else None

    def words(self, first: int = 0) -> torch.Tensor:
        """The bits of keys [64 * first, length) as int64 words, `(B, H_kv, width, words)`."""
        if self.buffer is None:  # packed from the codes of those keys
            signs = self.signs(64 * first, self.length)
            return KeyBits.empty(signs, signs.shape[-1], signs.shape[-2]).extend(signs).words()
        used = -(-self.length // 64) * 8
        return self.buffer[..., :used].view(torch.int64)[..., first:]

    def signs(self, start: int, stop: int) -> torch.Tensor:
        """Bit-major sign columns of keys [start, stop) from their codes, bool
        `(B, H_kv, stop - start, width)`: column b * tables + t is bit b of table t's code."""
        codes = self.key_codes(start, stop).unsqueeze(-2)  # (B, H_kv, keys, 1, tables)
        shifts = torch.arange(self.code_bits, dtype=torch.int16, device=codes.device)
        bits = codes.bitwise_right_shift(shifts.view(-1, 1)).bitwise_and_(1).bool()
        return bits.flatten(-2)

    def key_codes(self, start: int, stop: int) -> torch.Tensor:
        """Codes of keys [start, stop), `(B, H_kv, stop - start, tables)` int16 (`code_bits`)."""
        if self.codes is None:
            raise ValueError("these key bits keep no codes (code_bits 0)")
        return self.codes[:, :, start:stop]

    def without_codes(self) -> KeyBits:
        """The same keys as bits alone (`buffer`), for where codes are no longer kept."""
        if self.buffer is not None:
            return KeyBits(self.buffer, self.length)
        signs = self.signs(0, self.length)
        return KeyBits.empty(signs, signs.shape[-1], self.length).extend(signs)

    def extend(self, signs: torch.Tensor) -> KeyBits:
        """These keys followed by `signs` `(B, H_kv, new, width)` bool, bit-major; reuses
        the buffers while they have room."""
        start, total = self.length, self.length + signs.shape[-2]
        if self.buffer is None:
            assert self.codes is not None
            codes = self.codes
            if total > codes.shape[2]:
                capacity = _capacity(-(-total // 8)) * 8
                codes = codes.new_empty((*codes.shape[:2], capacity, codes.shape[-1]))
                codes[:, :, :start] = self.key_codes(0, start)
            # bit-major columns: bit b of table t at b * tables + t
            new_codes = table_codes(signs.unflatten(-1, (self.code_bits, -1)), -2)
            codes[:, :, start:total] = new_codes
            return KeyBits(None, total, codes, self.code_bits)
        first, stop = start // 8, -(-total // 8)
        buffer = self.buffer
        if stop > buffer.shape[-1]:
            buffer = buffer.new_zeros((*buffer.shape[:-1], _capacity(stop)))
            kept_bytes = min(first + 1, self.buffer.shape[-1])
            buffer[..., :kept_bytes] = self.buffer[..., :kept_bytes]
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
        return KeyBits(buffer, total)

    @classmethod
    def empty(cls, like: torch.Tensor, width: int, keys: int = 0, code_bits: int = 0) -> KeyBits:
        """No keys yet, with room for `keys` (so filling them never copies the buffers): bits,
        or codes of `code_bits` bits when `code_bits` > 0."""
        batch, kv_heads = like.shape[:2]
        capacity = _capacity(-(-keys // 8))
        if code_bits > 0:
            shape = (batch, kv_heads, capacity * 8, width // code_bits)
            codes = torch.empty(shape, dtype=torch.int16, device=like.device)
            return cls(None, 0, codes, code_bits)
        buffer = torch.zeros(
            batch, kv_heads, width, capacity, dtype=torch.uint8, device=like.device
        )
        return cls(buffer, 0)


def _capacity(used_bytes: int) -> int:
    """Buffer bytes for `used_bytes`: 1/8 spare (decode steps append in place), whole words."""
    return -(-(used_bytes + used_bytes // 8 + 64) // 8) * 8


@dataclass(frozen=True)
class BucketIndex:
    """Keys [0, length) grouped by code, per (batch, KV head, table).

    `order` `(B, H_kv, tables, length)` int16 (int32 past 32767 keys): the key indices sorted
    by their code in that
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
        order = torch.empty(batch, kv_heads, tables, length, dtype=_order_dtype(length))
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


def index_bytes(batch: int, kv_heads: int, keys: int, tables: int) -> int:
    """Bytes of the codes and the bucket index of `keys` keys (offsets aside)."""
    return batch * kv_heads * keys * tables * (2 + _order_dtype(keys).itemsize)


def _order_dtype(keys: int) -> torch.dtype:
    return torch.int16 if keys <= torch.iinfo(torch.int16).max else torch.int32


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
    with their total. The sizes are read in place (a CPU tensor's numpy() shares its memory:
    no host round trip, like the other CPU paths of docs/methods.md §5.2)."""
    counts = sizes.numpy()
    total = int(counts.sum())
    if total <= most:  # one run (a decode step): no cumulative sums
        yield 0, len(counts), total
        return
    ends = np.cumsum(counts)
    first, done = 0, 0
    while first < len(counts):
        last = max(first + 1, int(np.searchsorted(ends, done + most, side="right")))
        total = int(ends[last - 1]) - done
        yield first, last, total
        first, done = last, done + total


def colliding(
    query_signs: torch.Tensor, key_bits: torch.Tensor, bits: int, matches: int, budget: int
) -> torch.Tensor:
    """Keys that collide with each query in at least `matches` (1 or 2) tables, bool.

    query_signs `(B, H_kv, rows, tables * bits)` bool, table-major (the query heads of a
    KV head stacked as rows); key_bits `(B, H_kv, bits * tables, words)` int64, bit-major
    (`bit_major`), 64 keys a word. Returns `(B, H_kv, rows, words * 64)`. A table
    collides where no bit differs: the XOR of the key words with the query's bit (all ones or
    all zeros), ORed over the table's bits one bit at a time (so the work stays in cache).
    Tables go in blocks whose int64 work fits `budget` bytes.
    """
    batch, kv_heads, rows, width = query_signs.shape
    words = key_bits.shape[-1]
    tables = width // bits
    query_words = bit_major(query_signs, bits).to(torch.int64).neg_()
    query_words = query_words.view(batch, kv_heads, rows, bits, tables, 1)
    key_words = key_bits.view(batch, kv_heads, 1, bits, tables, words)
    per_table = batch * kv_heads * rows * words * 8
    block = max(1, min(tables, budget // max(1, 2 * per_table)))
    hits: tuple[torch.Tensor, torch.Tensor | None] | None = None
    for start in range(0, tables, block):
        stop = min(start + block, tables)
        keys, query = key_words[..., start:stop, :], query_words[..., start:stop, :]
        differ = torch.bitwise_xor(keys[:, :, :, 0], query[:, :, :, 0])
        scratch = torch.empty_like(differ)
        for bit in range(1, bits):
            differ |= torch.bitwise_xor(keys[:, :, :, bit], query[:, :, :, bit], out=scratch)
        counted = _at_least(differ.bitwise_not_(), matches)  # hit tables, folded
        hits = counted if hits is None else _join(hits, counted, matches)
    assert hits is not None
    enough = hits[0] if matches == 1 else hits[1]
    assert enough is not None
    return _unpack(enough)


def colliding_indexed(
    query_signs: torch.Tensor,
    key_bits: KeyBits,
    index: BucketIndex,
    bits: int,
    matches: int,
    budget: int,
) -> torch.Tensor:
    """`colliding` over keys [0, key_bits.length), bool `(B, H_kv, rows, N)`, the same keys:
    those in `index` read from their buckets, the rest (the tail) bit-sliced over the words
    that hold them (docs/methods.md §6.10). A key is in one part only, so each part's
    ">= matches" is the whole answer for its keys."""
    total, start = key_bits.length, index.length
    codes = table_codes(query_signs.unflatten(-1, (-1, bits)), dim=-1)
    hits = index.lookup(codes, matches, budget, total)
    if start == total:
        return hits
    if total - start <= 64 and codes.numel() * (total - start) <= budget:
        # a few keys (decode steps): their codes compared directly, in fewer ops
        equal = codes.unsqueeze(-2) == key_bits.key_codes(start, total).unsqueeze(2)
        hits[..., start:] = as_bytes(equal).sum(dim=-1, dtype=torch.int32) >= matches
        return hits
    word = start // 64
    tail = colliding(query_signs, key_bits.words(word), bits, matches, budget)
    hits[..., start:] = tail[..., start - word * 64 : total - word * 64]
    return hits


def bit_major(signs: torch.Tensor, bits: int) -> torch.Tensor:
    """Reorder `(..., tables * bits)` table-major sign columns to bit-major `(..., bits * tables)`
    (column b * tables + t = bit b of table t), so each bit of all tables is one slice."""
    return signs.unflatten(-1, (-1, bits)).transpose(-1, -2).flatten(-2)


def _at_least(hits: torch.Tensor, matches: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Words of keys hit in >= 1 and (matches == 2) >= 2 of the tables on dim -2."""
    one: torch.Tensor = hits
    two: torch.Tensor | None = None
    while one.shape[-2] > 1:
        half = one.shape[-2] // 2
        a, b = one[..., :half, :], one[..., half : 2 * half, :]
        if matches == 2:
            both = a & b
            if two is not None:
                both |= two[..., :half, :] | two[..., half : 2 * half, :]
        joined = a | b
        if one.shape[-2] % 2:
            last = one[..., 2 * half :, :]
            if matches == 2:
                both[..., :1, :] |= joined[..., :1, :] & last
                if two is not None:
                    both[..., :1, :] |= two[..., 2 * half :, :]
            joined[..., :1, :] |= last
        one, two = joined, (both if matches == 2 else None)
    if matches == 2 and two is None:  # a single table: never two hits
        two = torch.zeros_like(one)
    return one.squeeze(-2), None if two is None else two.squeeze(-2)


def _join(
    a: tuple[torch.Tensor, torch.Tensor | None],
    b: tuple[torch.Tensor, torch.Tensor | None],
    matches: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if matches == 1 or a[1] is None or b[1] is None:
        return a[0] | b[0], None
    return a[0] | b[0], a[1] | b[1] | (a[0] & b[0])


def _unpack(words: torch.Tensor) -> torch.Tensor:
    """int64 words `(..., words)` -> bool `(..., words * 64)`, key j = bit j % 8 of byte j // 8."""
    data = words.contiguous().view(torch.uint8)
    shifts = torch.arange(8, dtype=torch.uint8, device=words.device)
    return (
        (data.unsqueeze(-1) >> shifts).bitwise_and_(1).view(*words.shape[:-1], -1).view(torch.bool)
    )
