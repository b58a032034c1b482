"""Per-request sparse-attention state: seeds, call counters and per-layer caches
(docs/methods.md §6.12).

One `SparseState` lives for one context (one request). The adapter:

1. creates it after the dense context prefill;
2. before each question calls `state.crop(context_length)` and
   `state.begin_question(sample_id, question_index)`;
3. passes it to every `sparse_attention_forward` call.

`sparse_attention_forward` itself calls `begin_call(layer_idx, first_position)` at every layer
call: it advances that layer's call counter (part of the random seed) and cuts that layer's caches
back to the first query's position, so caches never hold data derived from keys that were dropped
from the KV cache, even if the caller forgot to crop.

Caches are plain per-layer dicts (`state.layer(layer_idx)`). An entry with a `crop(length)` method
(the `Croppable` protocol) is cut back by `crop`; it returns the cropped entry, or None when it
must be recomputed. Entries without `crop` (hash matrices, weights) do not depend on the keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from sparse_attention_hub.hashing import json_sha256


@runtime_checkable
class Croppable(Protocol):
    """A cache entry derived from keys [0, length)."""

    def crop(self, length: int) -> Croppable | None: ...


@dataclass(frozen=True)
class KeyPrefix:
    """A tensor derived from keys [0, rows * keys_per_row), one row per `keys_per_row` keys.

    The row axis is `-2`: per-key signatures use `keys_per_row=1`, Quest page bounds use the page
    size (only complete pages are cached). Rows live in a buffer with spare capacity, so a decode
    step appends in amortised O(1) instead of copying the whole cache.
    """

    buffer: torch.Tensor
    rows: int
    keys_per_row: int = 1

    @property
    def data(self) -> torch.Tensor:
        return self.buffer[..., : self.rows, :]

    def crop(self, length: int) -> KeyPrefix | None:
        rows = length // self.keys_per_row
        if rows >= self.rows:
            return self
        return KeyPrefix(self.buffer, rows, self.keys_per_row) if rows > 0 else None

    def extend(self, new: torch.Tensor) -> KeyPrefix:
        """These rows followed by `new`; reuses the buffer while it has room (rows past
        `self.rows` belong to no live entry)."""
        total = self.rows + new.shape[-2]
        buffer = self.buffer
        if total > buffer.shape[-2]:
            capacity = total + total // 4 + 16
            buffer = new.new_empty((*new.shape[:-2], capacity, new.shape[-1]))
            buffer[..., : self.rows, :] = self.data
        buffer[..., self.rows : total, :] = new
        return KeyPrefix(buffer, total, self.keys_per_row)


class SparseState:
    """Seeds and caches of one request; per-layer dicts keyed by `layer_idx`."""

    def __init__(self) -> None:
        self.sample_id = ""
        self.question_index = 0
        self._layers: dict[int, dict[str, Any]] = {}
        self._calls: dict[int, int] = {}

    def begin_question(self, sample_id: str, question_index: int) -> None:
        """Set the seed key of the next question and reset the per-layer call counters."""
        self.sample_id = str(sample_id)
        self.question_index = int(question_index)
        self._calls.clear()

    def crop(self, length: int) -> None:
        """Drop everything derived from keys at positions >= `length` (every layer)."""
        if length < 0:
            raise ValueError(f"crop length must be >= 0, got {length}")
        for layer_idx in list(self._layers):
            self._crop_layer(layer_idx, length)

    def layer(self, layer_idx: int) -> dict[str, Any]:
        """The cache dict of one layer (created empty on first use)."""
        return self._layers.setdefault(layer_idx, {})

    def begin_call(self, layer_idx: int, first_position: int) -> int:
        """Start one attention call of a layer: crop its caches to `first_position`, count it.

        `first_position` = N - Q, the absolute position of the call's first query: keys at or
        beyond it are new in this call, so no cache may hold data derived from older keys there.
        Returns the call index (0 for the first call since `begin_question`).
        """
        if layer_idx in self._layers:
            self._crop_layer(layer_idx, first_position)
        index = self._calls.get(layer_idx, -1) + 1
        self._calls[layer_idx] = index
        return index

    def call_index(self, layer_idx: int) -> int:
        """Index of the current call of `layer_idx` (0 before any call)."""
        return max(self._calls.get(layer_idx, 0), 0)

    def generator(self, layer_idx: int, seed: int) -> torch.Generator:
        """A CPU generator seeded from SHA-256 of (seed, sample_id, question, layer, call index).

        Draws happen on CPU (then move to the device) so masks are identical on every device.
        """
        key = [int(seed), self.sample_id, self.question_index, int(layer_idx)]
        key.append(self.call_index(layer_idx))
        digest = bytes.fromhex(json_sha256(key, compact=False))  # the spelling seeds were made with
        generator = torch.Generator(device="cpu")
        generator.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
        return generator

    def prefix(
        self,
        layer_idx: int,
        name: str,
        rows: int,
        compute: Callable[[int, int], torch.Tensor],
        keys_per_row: int = 1,
        block_rows: int | None = None,
    ) -> torch.Tensor:
        """Rows [0, rows) of a cached `KeyPrefix` (row axis -2), computing only the new rows.

        `compute(start, stop)` returns rows [start, stop), i.e. keys
        [start * keys_per_row, stop * keys_per_row); it is called for at most `block_rows` rows
        at a time (bounding its working memory), the blocks then joined.
        """
        if block_rows is not None:
            compute = _blockwise(compute, max(1, block_rows))
        cache = self.layer(layer_idx)
        entry = cache.get(name)
        if not isinstance(entry, KeyPrefix) or entry.keys_per_row != keys_per_row:
            entry = None
        elif entry.rows > rows:
            entry = entry.crop(rows * keys_per_row)
        if entry is None:
            new = compute(0, rows)
            entry = KeyPrefix(new, int(new.shape[-2]), keys_per_row)
        elif entry.rows < rows:
            entry = entry.extend(compute(entry.rows, rows))
        cache[name] = entry
        return entry.data

    def _crop_layer(self, layer_idx: int, length: int) -> None:
        cache = self._layers[layer_idx]
        for name, entry in list(cache.items()):
            if isinstance(entry, Croppable):
                cropped = entry.crop(length)
                if cropped is None:
                    del cache[name]
                else:
                    cache[name] = cropped


def _blockwise(
    compute: Callable[[int, int], torch.Tensor], block: int
) -> Callable[[int, int], torch.Tensor]:
    def blocks(start: int, stop: int) -> torch.Tensor:
        if stop - start <= block:
            return compute(start, stop)
        parts = [compute(a, min(a + block, stop)) for a in range(start, stop, block)]
        return torch.cat(parts, dim=-2)

    return blocks
