"""Long contexts: results independent of the query chunking, the gathered path equal to whole
rows, and a layer call that reads nothing back to the host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from sparse_attention_hub.sparse_attention import (
    MASKERS,
    AttentionStats,
    LocalMaskerConfig,
    MagicPigConfig,
    MaskerConfig,
    OracleTopKConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    SparseState,
    dense_attention,
    sparse_attention_forward,
)
from sparse_attention_hub.sparse_attention import forward as forward_module
from sparse_attention_hub.sparse_attention.attention import row_table
from sparse_attention_hub.sparse_attention.call import CallScope

from .helpers import EXAMPLES, Shape, qkv

SHAPE = Shape(batch=1, kv_heads=2, groups=3, q_len=7, k_len=90, dim=8)
SCALE = SHAPE.dim**-0.5
CALLS = [(7, 90), (1, 91), (3, 94)]  # question prefill, a decode step, a longer follow-up


def configs(masker: MaskerConfig) -> list[ResearchAttentionConfig]:
    window = [SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=4)]
    return [ResearchAttentionConfig([masker]), ResearchAttentionConfig([*window, masker], seed=3)]


def masker_of(name: str, directory: Path) -> MaskerConfig:
    return EXAMPLES[name][0](SHAPE, directory)


def run_calls(config: ResearchAttentionConfig, **kwargs: Any) -> list[torch.Tensor]:
    """Three calls of one layer sharing a state (caches, call counters), as a question runs."""
    q_all, k_all, v_all = qkv(
        Shape(SHAPE.batch, SHAPE.kv_heads, SHAPE.groups, 11, 94, SHAPE.dim), seed=5
    )
    state = SparseState()
    state.begin_question("sample", 0)
    outputs, used = [], 0
    for q_len, k_len in CALLS:
        query = q_all[:, :, used : used + q_len]
        used += q_len
        outputs.append(
            sparse_attention_forward(
                query,
                k_all[:, :, :k_len],
                v_all[:, :, :k_len],
                None,
                SCALE,
                layer_idx=1,
                config=config,
                state=state,
                **kwargs,
            )
        )
    return outputs


@pytest.mark.parametrize("name", MASKERS.names())
def test_outputs_do_not_depend_on_the_query_chunking(name: str, tmp_path: Path) -> None:
    for config in configs(masker_of(name, tmp_path)):
        whole = run_calls(config)
        for rows in (1, 2, 3):
            chunked = run_calls(config, query_chunk=rows)
            for a, b in zip(whole, chunked, strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", MASKERS.names())
def test_gathered_path_equals_whole_rows(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for config in configs(masker_of(name, tmp_path)):
        fast = run_calls(config)
        monkeypatch.setattr(forward_module, "GATHER_FRACTION", 0.0)  # whole rows only
        slow = run_calls(config)
        monkeypatch.undo()
        for a, b in zip(fast, slow, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_gathered_path_runs_for_bounded_maskers_only(tmp_path: Path) -> None:
    window = [SinkMaskerConfig(sink_size=4), LocalMaskerConfig(window_size=16)]
    assert forward_module.gather_limit(ResearchAttentionConfig(window), 4096, True) == 20
    # no rows can be empty without a plain causal mask: whole rows keep the dense fallback
    assert forward_module.gather_limit(ResearchAttentionConfig(window), 4096, False) is None
    assert forward_module.gather_limit(ResearchAttentionConfig(window), 40, True) is None
    sampler = EXAMPLES["magicpig"][0](SHAPE, tmp_path)
    unbounded = ResearchAttentionConfig([*window, sampler])
    assert forward_module.gather_limit(unbounded, 4096, True) is None


def test_a_sparse_mask_at_decode_gathers_on_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unbounded masker (MagicPIG) whose mask turns out sparse takes the gathered path on CPU,
    at a decode step and for a question, with the same output as whole rows."""
    window = [SinkMaskerConfig(sink_size=4), LocalMaskerConfig(window_size=16)]
    config = ResearchAttentionConfig([*window, MagicPigConfig(lsh_l=20, lsh_k=8)])
    q, k, v = qkv(Shape(1, 2, 3, 8, 2048, 16), seed=3)
    seen: list[int] = []
    gathered = forward_module.gathered_attention

    def spy(*args: Any) -> torch.Tensor:
        seen.append(args[0].shape[2])  # query rows of the chunk
        return gathered(*args)

    def run(q_len: int, memory_mib: int = 512) -> torch.Tensor:
        state = SparseState()
        state.begin_question("sample", 0)
        return sparse_attention_forward(
            q[:, :, :q_len],
            k,
            v,
            None,
            0.25,
            layer_idx=1,
            config=config,
            state=state,
            memory_mib=memory_mib,
        )

    monkeypatch.setattr(forward_module, "gathered_attention", spy)
    fast = run(1)
    assert seen == [1]
    question = run(8)
    # 8 rows x 3 heads per KV head would gather too many K rows: q . k comes from one matmul
    assert seen == [1, 8]
    # 1 MiB: one row's working set (6 heads x 2048 keys x 72 bytes) fits, the gathered K rows
    # beside it would not: q . k comes from the matmul there too
    torch.testing.assert_close(run(1, memory_mib=1), fast, rtol=1e-5, atol=1e-6)
    assert seen == [1, 8, 1]
    monkeypatch.setattr(forward_module, "GATHER_FRACTION", 0.0)  # whole rows only
    torch.testing.assert_close(fast, run(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(question, run(8), rtol=1e-5, atol=1e-6)
    assert seen == [1, 8, 1]
    monkeypatch.setattr(forward_module, "GATHER_FRACTION", 0.25)
    # bf16 values take the padded layout, which copies rows: decode steps only
    q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
    run(8)
    assert seen == [1, 8, 1]
    run(1)
    assert seen == [1, 8, 1, 1]


def test_gathered_path_reads_kv_views_of_a_larger_buffer() -> None:
    """K and V handed out by an appending cache are views with heads a capacity apart: the
    gathered path reads their rows where they lie, with the same output as contiguous copies."""
    q, k, v = qkv(Shape(2, 3, 2, 1, 50, 8), seed=4)
    buffer_k, buffer_v = torch.zeros(2, 3, 64, 8), torch.zeros(2, 3, 64, 8)
    buffer_k[:, :, :50], buffer_v[:, :, :50] = k, v
    k_view, v_view = buffer_k[:, :, :50], buffer_v[:, :, :50]
    assert not k_view.is_contiguous()
    window = [SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=4)]
    config = ResearchAttentionConfig([*window, OracleTopKConfig(heavy_size=4)])
    assert forward_module.gather_limit(config, 50, True) == 10

    def run(keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        state = SparseState()
        state.begin_question("sample", 0)
        return sparse_attention_forward(
            q, keys, values, None, SCALE, layer_idx=1, config=config, state=state
        )

    assert torch.equal(run(k_view, v_view), run(k, v))
    table, offsets = row_table(k_view)  # K rows too (the path gathers them without scores)
    for b, h, n in [(0, 0, 0), (0, 2, 49), (1, 1, 17), (1, 2, 0)]:
        assert torch.equal(table[offsets[b * 3 + h] + n], k[b, h, n])


def test_random_draws_do_not_depend_on_the_chunking() -> None:
    q, k, v = qkv(SHAPE, seed=2)

    def draws(rows: int) -> list[torch.Tensor]:
        state = SparseState()
        state.begin_call(0, SHAPE.k_len - SHAPE.q_len)
        scope = CallScope(q, k, v, 0, state, seed=9)
        parts: list[list[torch.Tensor]] = [[], []]
        for start in range(0, SHAPE.q_len, rows):
            stop = min(start + rows, SHAPE.q_len)
            for draw in (0, 1):
                parts[draw].append(scope.uniform(draw, start, stop, q.device))
        return [torch.cat(p, dim=2) for p in parts]

    whole = draws(SHAPE.q_len)
    for rows in (1, 3):
        assert all(torch.equal(a, b) for a, b in zip(whole, draws(rows), strict=True))
    # one query row: draw 0 is the (batch, heads, 1, keys) draw of one torch.rand call
    state = SparseState()
    state.begin_call(0, SHAPE.k_len - 1)
    scope = CallScope(q[:, :, :1], k, v, 0, state, seed=9)
    expected = torch.rand(
        (1, SHAPE.heads, 1, SHAPE.k_len), generator=state.generator(0, 9), dtype=torch.float64
    )
    assert torch.equal(scope.uniform(0, 0, 1, q.device), expected)


def test_dense_attention_in_chunks_is_dense_attention() -> None:
    q, k, v = qkv(SHAPE, seed=1)
    whole = dense_attention(q, k, v, None, SCALE)
    tiny = dense_attention(q, k, v, None, SCALE, memory_mib=0)  # one query per chunk
    torch.testing.assert_close(whole, tiny, rtol=0, atol=1e-6)


# ----- no host round-trips -----------------------------------------------------------------
HOST_READS = {"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "cpu", "numpy"}
HOST_READS |= {"equal", "nonzero", "masked_select", "unique"}  # a bool or a data-sized result


class HostReads(TorchFunctionMode):
    """Counts tensor operations that must read device values on the host."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        boolean_index = name == "__getitem__" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool
            for i in (args[1] if isinstance(args[1], tuple) else (args[1],))
        )
        # numpy() of a CPU tensor shares its memory: no transfer (mask.kth_largest uses it on
        # CPU only, and is tested to take torch.topk on other devices)
        cpu_numpy = name == "numpy" and args[0].device.type == "cpu"
        if (name in HOST_READS or boolean_index) and not cpu_numpy:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


def host_reads(config: ResearchAttentionConfig, stats: AttentionStats) -> Iterator[list[str]]:
    """Host reads of each of the three calls (the first one fills the state's caches)."""
    q_all, k_all, v_all = qkv(Shape(1, 2, 3, 11, 94, 8), seed=5)
    state = SparseState()
    state.begin_question("sample", 0)
    used = 0
    for q_len, k_len in CALLS:
        with HostReads() as mode:
            sparse_attention_forward(
                q_all[:, :, used : used + q_len],
                k_all[:, :, :k_len],
                v_all[:, :, :k_len],
                None,
                SCALE,
                layer_idx=1,
                config=config,
                state=state,
                stats=stats,
            )
        used += q_len
        yield mode.seen


@pytest.mark.parametrize("name", MASKERS.names())
def test_a_layer_call_reads_nothing_back_to_the_host(name: str, tmp_path: Path) -> None:
    stats = AttentionStats(output_error=True)
    stats.set_context("sample", 0, "decode", 1)
    for config in configs(masker_of(name, tmp_path)):
        for seen in host_reads(config, stats):
            if name == "magicpig":
                # the one exception: whether M_norm grew (then every key is hashed again)
                assert seen in ([], ["equal"])
            else:
                assert seen == []
    assert stats.summary()["n_calls"] == 2 * len(CALLS)  # read once, here
