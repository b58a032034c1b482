"""The sparse forward the adapter calls, and the statistics it records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparse_attention_hub.sparse_attention import (
    STATS_FILENAME,
    AttentionStats,
    LocalMaskerConfig,
    OracleTopKConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    SparseState,
    dense_attention,
    get_preset,
    sparse_attention_forward,
)
from sparse_attention_hub.sparse_attention.stats import TOTALS_KEY as QUESTION_TOTALS

from .helpers import Shape, qkv, reference_attention

SHAPE = Shape(batch=2, kv_heads=2, groups=3, q_len=3, k_len=24, dim=8)
SCALE = SHAPE.dim**-0.5


def forward(
    config: ResearchAttentionConfig | None,
    stats: AttentionStats | None = None,
    layer_idx: int = 0,
    attention_mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    q, k, v = qkv(SHAPE, 4, dtype)
    return sparse_attention_forward(
        q,
        k,
        v,
        attention_mask,
        SCALE,
        layer_idx=layer_idx,
        config=config,
        state=SparseState(),
        stats=stats,
    )


def test_dense_paths_match_dense_attention_and_log_density_one() -> None:
    q, k, v = qkv(SHAPE, 4)
    dense = dense_attention(q, k, v, None, SCALE)
    stats = AttentionStats(output_error=True)
    stats.set_context("s", 0, "question_prefill", 0)
    window = ResearchAttentionConfig(
        [SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=24)]
    )
    topk = ResearchAttentionConfig([OracleTopKConfig(heavy_size=2)], dense_layers=[3])
    for config, layer in [(None, 0), (ResearchAttentionConfig([]), 1), (window, 2), (topk, 3)]:
        assert torch.equal(forward(config, stats, layer), dense)
    summary = stats.summary()
    assert summary["density"] == {
        "overall": 1.0,
        "per_layer": dict.fromkeys(["0", "1", "2", "3"], 1.0),
    }
    assert summary["output_error"]["overall"] == 0.0
    assert summary["dense_fallback_rows"] == 0


def test_empty_rows_fall_back_to_dense_and_count_as_density_one() -> None:
    stats = AttentionStats()
    config = ResearchAttentionConfig([OracleTopKConfig(heavy_size=0.01)])  # floor(0.24) = 0 keys
    out = forward(config, stats)
    q, k, v = qkv(SHAPE, 4)
    assert torch.equal(out, dense_attention(q, k, v, None, SCALE))
    summary = stats.summary()
    assert summary["density"]["overall"] == 1.0
    assert summary["dense_fallback_rows"] == SHAPE.batch * SHAPE.heads * SHAPE.q_len


def test_sparse_call_density_and_output_error(tmp_path: Path) -> None:
    stats = AttentionStats(output_error=True)
    stats.start(tmp_path)
    stats.set_context("s", 1, "decode", 2)
    config = ResearchAttentionConfig(
        [SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=3)]
    )
    out = forward(config, stats)
    q, k, v = qkv(SHAPE, 4)
    dense = dense_attention(q, k, v, None, SCALE)
    # rows at positions 21, 22, 23 see 22, 23, 24 keys and select 5 each
    assert stats.summary()["density"]["overall"] == pytest.approx(15 / (22 + 23 + 24))
    error = float((dense - out).norm() / dense.norm())
    assert error > 0
    assert stats.summary()["output_error"]["overall"] == pytest.approx(error, rel=1e-5)
    record = stats.records()[0]
    assert record["sample_id"] == "s" and record["phase"] == "decode" and record["step"] == 2
    assert record["n_queries"] == 3 and record["n_keys"] == 24 and record["layer"] == 0


def test_overall_density_is_weighted_by_allowed_entries() -> None:
    stats = AttentionStats()
    stats.set_context("s", 0, "decode", 1)
    window = ResearchAttentionConfig(
        [SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=3)], dense_layers=[1]
    )
    forward(window, stats, layer_idx=0)  # 12 (b, h) x 15 of 22 + 23 + 24 = 69 entries
    q, k, v = qkv(Shape(batch=1, kv_heads=1, groups=1, q_len=1, k_len=10, dim=8), 1)
    sparse_attention_forward(
        q, k, v, None, SCALE, layer_idx=1, config=window, state=SparseState(), stats=stats
    )  # dense layer: 10 of 10
    density = stats.summary()["density"]
    assert density["overall"] == pytest.approx((12 * 15 + 10) / (12 * 69 + 10))
    assert density["per_layer"] == {"0": pytest.approx(15 / 69), "1": 1.0}


def test_output_error_is_null_when_the_dense_output_is_zero() -> None:
    stats = AttentionStats(output_error=True)
    stats.set_context("s", 0, "decode", 1)
    q, k, v = qkv(SHAPE, 4)
    config = ResearchAttentionConfig([SinkMaskerConfig(sink_size=2)])
    sparse_attention_forward(
        q,
        k,
        torch.zeros_like(v),
        None,
        SCALE,
        layer_idx=0,
        config=config,
        state=SparseState(),
        stats=stats,
    )
    assert stats.records()[0]["output_error"] is None
    assert stats.summary()["output_error"] == {"overall": None, "per_layer": {}}


def test_bool_and_additive_masks_with_padding_agree() -> None:
    q, k, v = qkv(SHAPE, 4)
    positions = torch.arange(SHAPE.k_len)
    rows = torch.arange(SHAPE.q_len)[:, None] + SHAPE.k_len - SHAPE.q_len
    allowed = (positions[None, :] <= rows)[None, None].repeat(SHAPE.batch, 1, 1, 1)
    allowed[1, :, :, :5] = False  # left padding of the second sequence
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    config = get_preset("oracle_topk")
    outs = []
    for mask in (allowed, additive):
        outs.append(
            sparse_attention_forward(
                q, k, v, mask, SCALE, layer_idx=0, config=config, state=SparseState()
            )
        )
    assert torch.equal(outs[0], outs[1])
    dense = dense_attention(q, k, v, allowed, SCALE)
    torch.testing.assert_close(dense, reference_attention(q, k, v, allowed), rtol=1e-5, atol=1e-6)


def test_bf16_in_bf16_out() -> None:
    out = forward(get_preset("vattention"), dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 6, 8)
    assert torch.isfinite(out.float()).all()


def test_bad_calls_are_errors() -> None:
    q, k, v = qkv(SHAPE, 4)
    with pytest.raises(ValueError, match="layer_idx"):
        sparse_attention_forward(
            q, k, v, None, SCALE, layer_idx=None, config=None, state=SparseState()
        )
    with pytest.raises(ValueError, match="not a multiple"):
        sparse_attention_forward(
            q[:, :5], k, v, None, SCALE, layer_idx=0, config=None, state=SparseState()
        )


def test_stats_file_is_fresh_per_job_and_flushed(tmp_path: Path) -> None:
    path = tmp_path / STATS_FILENAME
    path.write_text('{"old": "job"}\n')
    stats = AttentionStats()
    stats.start(tmp_path)
    assert path.read_text() == ""
    stats.set_context("a", 0, "question_prefill", 0)
    for layer in range(3):
        forward(get_preset("streaming"), stats, layer)
    assert path.read_text() == ""  # buffered until flush
    stats.flush()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    calls, totals = lines[:-1], lines[-1]
    assert [line["layer"] for line in calls] == [0, 1, 2]
    assert all(line["sample_id"] == "a" and 0 < line["density"] < 1 for line in calls)
    assert totals["sample_id"] == "a" and totals[QUESTION_TOTALS]["layers"].keys() == {
        "0",
        "1",
        "2",
    }
    forward(get_preset("streaming"), stats, 0)  # left in the buffer ...
    stats.start(tmp_path)  # ... and dropped by the next job
    stats.flush()
    assert path.read_text() == "" and stats.summary()["n_calls"] == 0


def test_stats_start_accepts_the_file_path_a_benchmark_passes(tmp_path: Path) -> None:
    # Benchmark.run_benchmark hands `<job_dir>/attention_stats.jsonl`; it must stay a plain file
    # (the executor unlinks it before re-running a stale job).
    target = tmp_path / STATS_FILENAME
    stats = AttentionStats()
    stats.start(target)
    stats.set_context("a", 0, "question_prefill", 0)
    forward(get_preset("streaming"), stats)
    stats.flush()
    assert target.is_file() and len(target.read_text().splitlines()) == 2  # call + totals


def test_sampling_factor_and_max_records_thin_only_the_file(tmp_path: Path) -> None:
    stats = AttentionStats(sampling_factor=0.5, max_records=7, seed=1)
    stats.start(tmp_path)
    stats.set_context("a", 0, "decode", 1)
    for layer in range(20):
        forward(get_preset("streaming"), stats, layer)
        stats.flush()
    lines = [json.loads(line) for line in (tmp_path / STATS_FILENAME).read_text().splitlines()]
    assert sum("layer" in line for line in lines) == 7
    assert sum(QUESTION_TOTALS in line for line in lines) == 20  # one per flush, never thinned
    assert stats.summary()["n_calls"] == 20
    with pytest.raises(ValueError, match="sampling_factor"):
        AttentionStats(sampling_factor=0.0)
    with pytest.raises(ValueError, match="phase"):
        stats.set_context("a", 0, "prefill", 0)


def test_dense_summary_is_explicit() -> None:
    summary = AttentionStats.dense_summary()
    assert summary["density"]["overall"] == 1.0
    assert summary["output_error"]["overall"] == 0.0
    assert AttentionStats().summary()["density"]["overall"] == 1.0  # no calls: nothing was sparse
