"""Decode-step time of `sparse_attention_forward` per masker versus `dense_attention` (CPU).

Every preset, plus HashAttention and Double Sparsity (sink 4 + local 64 + 10% top-k) with random
weight / channel files written to a temporary directory (timing only: the files are not trained).
One decode step = one query (Q = 1) over N keys, shapes of SmolLM2-135M by default (B=1, H=9,
H_kv=3, D=64). The state is warmed first, so each timed call is a steady-state decode call:
caches cropped to N - 1 keys and extended by one. Median of `--repeats` calls, one layer.

    .venv/bin/python benchmarks/maskers.py [--keys 4096 16384] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file

from sparse_attention_hub.sparse_attention import (
    DoubleSparsityTopKConfig,
    HashAttentionTopKConfig,
    LocalMaskerConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    SparseState,
    dense_attention,
    get_preset,
    list_presets,
    sparse_attention_forward,
)


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: allocations, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def file_configs(
    directory: Path, layer: int, heads: int, head_dim: int
) -> dict[str, ResearchAttentionConfig]:
    """HashAttention (32 bits, 3-layer MLP) and Double Sparsity configs over random files."""
    generator = torch.Generator().manual_seed(0)
    hidden, bits = 128, 32
    tensors = {}
    for role in ("query", "key"):
        for j, (d_in, d_out) in enumerate([(head_dim, hidden), (hidden, hidden), (hidden, bits)]):
            prefix = f"layers.{layer}.{role}.{j}"
            tensors[f"{prefix}.weight"] = torch.randn(heads, d_in, d_out, generator=generator)
            tensors[f"{prefix}.bias"] = torch.zeros(heads, d_out)
    weights = directory / "hat.safetensors"
    save_file(tensors, str(weights))
    channels = directory / "channels.json"
    lists = [torch.randperm(head_dim, generator=generator).tolist() for _ in range(heads)]
    channels.write_text(json.dumps({f"model.layers.{layer}.self_attn.qk_proj": lists}))
    window = [SinkMaskerConfig(sink_size=4), LocalMaskerConfig(window_size=64)]
    hat = HashAttentionTopKConfig(
        heavy_size=0.1,
        hat_weight_file=str(weights),
        hat_mlp_layers=3,
        hat_mlp_hidden_size=hidden,
        hat_bits=bits,
    )
    ds = DoubleSparsityTopKConfig(heavy_size=0.1, sorted_channel_file=str(channels))
    return {
        "hashattention": ResearchAttentionConfig([*window, hat]),
        "double_sparsity": ResearchAttentionConfig([*window, ds]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--heads", type=int, default=9)
    parser.add_argument("--kv-heads", type=int, default=3)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--layer", type=int, default=5, help="layer index (not in dense_layers)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = stable timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    directory = tempfile.TemporaryDirectory()
    configs: dict[str, ResearchAttentionConfig | None] = {
        name: get_preset(name) for name in list_presets() if name != "dense"
    }
    configs.update(file_configs(Path(directory.name), args.layer, args.heads, args.head_dim))
    presets = list(configs)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, Q=1, B=1, "
        f"H={args.heads}, H_kv={args.kv_heads}, D={args.head_dim}, layer {args.layer}"
    )
    header = f"{'method':<16}" + "".join(f"{f'N={n} ms':>14}{'x dense':>9}" for n in args.keys)
    print(header)
    print("-" * len(header))
    rows: dict[str, list[tuple[float, float]]] = {"dense_attention": []}
    for name in presets:
        rows[name] = []
    for n_keys in args.keys:
        q = torch.randn(1, args.heads, 1, args.head_dim, generator=generator)
        k = torch.randn(1, args.kv_heads, n_keys, args.head_dim, generator=generator)
        v = torch.randn(1, args.kv_heads, n_keys, args.head_dim, generator=generator)
        scale = args.head_dim**-0.5
        dense = median_seconds(partial(dense_attention, q, k, v, None, scale), args.repeats)
        rows["dense_attention"].append((dense, 1.0))
        for name in presets:
            config = configs[name]
            state = SparseState()
            state.begin_question("bench", 0)
            step = partial(
                sparse_attention_forward,
                *(q, k, v, None, scale),
                layer_idx=args.layer,
                config=config,
                state=state,
            )
            seconds = median_seconds(step, args.repeats)
            rows[name].append((seconds, seconds / dense))
    for name, cells in rows.items():
        line = f"{name:<16}" + "".join(f"{s * 1e3:>14.2f}{r:>9.2f}" for s, r in cells)
        print(line)
    directory.cleanup()


if __name__ == "__main__":
    main()
