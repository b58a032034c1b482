"""What the query chunks of one attention call share: memory budget, float K/V, random draws.

`sparse_attention_forward` cuts a call's queries into chunks so its extra memory stays within a
budget (docs/methods.md §5.1); every chunk gets its own `MaskInputs` but the same `CallScope`, so
key-side work (float32 K/V, per-call caches) is done once per call and random draws do not depend
on the chunking: draw d of a call is one stream of B*H*Q*N uniform float64 numbers, query-major
(all of query row 0, then row 1, ...), draw 1 following draw 0 in the generator's sequence. A chunk
takes its rows of the stream, so a call drawn in one chunk or in many sees the same numbers (for
Q = 1, this is exactly the (batch, heads, 1, keys) draw of one `torch.rand` call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from sparse_attention_hub.sparse_attention.state import SparseState

DEFAULT_MEMORY_MIB = 512
ENTRY_BYTES = 72
"""Bytes of working memory per (batch, head, query, key) entry of a chunk while maskers build
their masks (logits, scores, the mask so far and its union, candidates, weights, float64 noise):
at most 67 measured for any masker by `benchmarks/maskers.py`'s dispatch-mode counter."""
CHUNK_SHARE = 0.85
"""Share of the budget the query chunks may use; the rest is for key-side work done once per
call (per-call caches, new rows of the state's key caches)."""
CPU_CHUNK_ENTRIES = 1 << 20
"""On CPU, a chunk holds at most this many (batch, head, query, key) entries (4 MiB per float32
tensor). Where freed memory goes back to the kernel (glibc's defaults, adapters/cpu_memory.py),
smaller temporaries page-fault less: at Q = 32, N = 16k such chunks took 0.57-0.68x the time of
one 32-row chunk; with freed memory kept the size matters little (docs/methods.md §5.2). GPUs take
whole budget chunks."""
_SKIP_BLOCK = 1 << 22  # numbers discarded per call when a draw starts mid-stream


@dataclass
class _Stream:
    generator: torch.Generator
    next_row: int


@dataclass
class CallScope:
    """One call: raw tensors as the model passed them, and everything its chunks share.

    query `(B, H, Q, D)`; key / value `(B, H_kv, N, D)`.
    `cache` holds per-call results a masker computes once and reuses in every chunk.
    """

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    layer_idx: int
    state: SparseState
    seed: int = 0
    memory_bytes: int = DEFAULT_MEMORY_MIB << 20
    cache: dict[str, Any] = field(default_factory=dict)
    _streams: dict[int, _Stream] = field(default_factory=dict)

    @property
    def q_len(self) -> int:
        return int(self.query.shape[2])

    @property
    def k_len(self) -> int:
        return int(self.key.shape[2])

    @property
    def context_length(self) -> int:
        """Absolute position of the call's first query (= keys that precede the call)."""
        return self.k_len - self.q_len

    @cached_property
    def keys(self) -> torch.Tensor:
        """float32 keys, converted once per call (no copy when they already are float32)."""
        return self.key.float()

    @cached_property
    def values(self) -> torch.Tensor:
        return self.value.float()

    def row_bytes(self, extra_row_bytes: int = 0) -> int:
        """Working memory of one query row: its (B, H, 1, N) entries plus `extra_row_bytes`."""
        batch, heads = self.query.shape[0], self.query.shape[1]
        return max(1, batch * heads * self.k_len * ENTRY_BYTES + extra_row_bytes)

    def fits_one_row(self, extra_row_bytes: int = 0) -> bool:
        return self.row_bytes(extra_row_bytes) <= int(self.memory_bytes * CHUNK_SHARE)

    def chunk_rows(self, extra_row_bytes: int = 0) -> int:
        """Queries per chunk so that a chunk's (B, H, rows, N) working set (plus
        `extra_row_bytes` per query row) fits the budget, and on CPU the cache
        (`CPU_CHUNK_ENTRIES`); at least one row (a row is not split: past about
        budget / (B * H * 72 bytes) keys, one row alone exceeds the budget)."""
        per_row = self.row_bytes(extra_row_bytes)
        rows = max(1, min(self.q_len, int(self.memory_bytes * CHUNK_SHARE) // per_row))
        if self.query.device.type == "cpu":
            entries = self.query.shape[0] * self.query.shape[1] * self.k_len
            rows = min(rows, max(1, CPU_CHUNK_ENTRIES // max(1, entries)))
        return rows

    def uniform(self, draw: int, start: int, stop: int, device: torch.device) -> torch.Tensor:
        """Rows [start, stop) of draw `draw`: float64 in [0, 1), `(B, H, rows, N)`.

        Drawn on CPU (masks are the same on every device) from the call's seeded generator;
        chunks must ask for their rows in order.
        """
        batch, heads, _, _ = self.query.shape
        stream = self._stream(draw, batch * heads * self.k_len)
        if stream.next_row != start:
            raise RuntimeError(f"draw {draw}: rows asked from {start}, stream at {stream.next_row}")
        shape = (stop - start, batch, heads, self.k_len)
        noise = torch.rand(shape, generator=stream.generator, dtype=torch.float64)
        stream.next_row = stop
        noise = noise.permute(1, 2, 0, 3)
        if device.type == "cuda":  # pinned, so the copy does not wait for the GPU stream
            return noise.pin_memory().to(device, non_blocking=True)
        return noise.to(device)

    def _stream(self, draw: int, row_numbers: int) -> _Stream:
        if draw in self._streams:
            return self._streams[draw]
        before = self._streams.get(draw - 1)
        if before is not None and before.next_row == self.q_len:
            stream = _Stream(before.generator, 0)  # the previous draw is used up: continue it
        elif before is not None:
            # the previous draw is part-way (an earlier chunk): a copy of its generator skips
            # only the rows it has left, which its own stream still draws for later chunks
            generator = torch.Generator(device="cpu")
            generator.set_state(before.generator.get_state())
            _skip(generator, (self.q_len - before.next_row) * row_numbers)
            stream = _Stream(generator, 0)
        else:
            generator = self.state.generator(self.layer_idx, self.seed)
            _skip(generator, draw * self.q_len * row_numbers)  # after d whole draws of the call
            stream = _Stream(generator, 0)
        self._streams[draw] = stream
        return stream


def _skip(generator: torch.Generator, numbers: int) -> None:
    """Advance `generator` past `numbers` uniform float64 draws."""
    while numbers > 0:
        step = min(numbers, _SKIP_BLOCK)
        torch.rand(step, generator=generator, dtype=torch.float64)
        numbers -= step
