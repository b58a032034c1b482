"""Every masker on CUDA (marker `gpu`): same masks and outputs as on CPU, nothing left on the CPU.

Random draws happen on CPU and move to the device, so even sampling masks match the CPU ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparse_attention_hub.sparse_attention import (
    MASKERS,
    AttentionStats,
    ResearchAttentionConfig,
    SparseState,
    build_mask,
    sparse_attention_forward,
)

from .helpers import EXAMPLES, Shape, inputs_for, qkv

SHAPE = Shape(batch=1, kv_heads=2, groups=3, q_len=6, k_len=70, dim=16)


def run_on(
    device: str, config: ResearchAttentionConfig
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Question prefill then two decode steps in bf16 on `device`: (masks, outputs) on CPU."""
    q, k, v = (t.to(device) for t in qkv(SHAPE, 3, torch.bfloat16))
    state, stats = SparseState(), AttentionStats(output_error=True)
    state.begin_question("s", 0)
    masks, outputs = [], []
    n, prefill = SHAPE.k_len, SHAPE.q_len - 2
    for queries, stop in [(q[:, :, :prefill], n - 2), (q[:, :, -2:-1], n - 1), (q[:, :, -1:], n)]:
        keys, values = k[:, :, :stop], v[:, :, :stop]
        probe = SparseState()
        probe.begin_question("s", 0)
        masks.append(build_mask(config, inputs_for(queries, keys, values, state=probe)).cpu())
        out = sparse_attention_forward(
            queries,
            keys,
            values,
            None,
            SHAPE.dim**-0.5,
            layer_idx=0,
            config=config,
            state=state,
            stats=stats,
        )
        assert out.device.type == torch.device(device).type and out.dtype == torch.bfloat16
        outputs.append(out.float().cpu())
    assert stats.summary()["n_calls"] == 3
    return masks, outputs


@pytest.mark.gpu
@pytest.mark.parametrize("name", MASKERS.names())
def test_masker_on_cuda_matches_cpu(name: str, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.fail("marker gpu: this test needs a CUDA device")
    config = ResearchAttentionConfig([EXAMPLES[name][0](SHAPE, tmp_path)])
    cpu_masks, cpu_outputs = run_on("cpu", config)
    cuda_masks, cuda_outputs = run_on("cuda", config)
    for cpu_mask, cuda_mask in zip(cpu_masks, cuda_masks, strict=True):
        same = (cpu_mask > 0) == (cuda_mask > 0)  # float32 matmuls may flip a rare near-tie
        assert same.float().mean() >= 0.99
        torch.testing.assert_close(cuda_mask[same], cpu_mask[same], rtol=1e-4, atol=1e-6)
    for cpu_out, cuda_out in zip(cpu_outputs, cuda_outputs, strict=True):
        torch.testing.assert_close(cuda_out, cpu_out, rtol=0.05, atol=0.05)
