"""Time and memory of `sparse_attention_forward` per masker, against torch's sdpa (CPU or GPU).

Every preset, plus HashAttention and Double Sparsity (sink 4 + local 64 + 10% top-k) with random
weight / channel files written to a temporary directory (timing only: the files are not trained).
Per masker and key count N: ms per call for a decode step (Q = 1) and a question prefill
(Q = 32), the ratio to `torch.nn.functional.scaled_dot_product_attention` on the same shapes
(in one process whose malloc keeps freed memory, as `sah`'s CPU workers do; `--malloc-default`
leaves it as it is),
and the peak extra memory of one call (tensors created during the call, inputs excluded, counted
by a dispatch mode, so the figure is the same on any device). Shapes of SmolLM2-135M by default
(B=1, H=9, H_kv=3, D=64). The state is warmed first, so each timed call is a steady-state call:
caches cropped to N - Q keys and extended by Q. Median over rounds, one layer; sdpa and the
maskers take turns call by call, and the ratio is the median of the per-round ratios. At least
`--repeats` rounds per case, more while they took less than `--min-seconds` (a 4k-key decode
case gets ~100 rounds, a Q=32 call over 64k keys the minimum); the rounds are printed.
Everything runs under `torch.inference_mode()`, as the HF adapter runs the model (without it
each op also passes autograd's dispatch: 5-10% more per decode call on our CPU).
Last, the peak extra memory of one call with Q = 256, N = 128k, H = 32, H_kv = 8 against the
memory budget (`--long-keys 0` skips it; it takes minutes on a CPU).

    python benchmarks/maskers.py [--keys 4096 16384 65536] [--queries 1 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import weakref
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from sparse_attention_hub.adapters.cpu_memory import keep_freed_memory
from sparse_attention_hub.sparse_attention import (
    DEFAULT_MEMORY_MIB,
    DoubleSparsityTopKConfig,
    HashAttentionTopKConfig,
    LocalMaskerConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    SparseState,
    get_preset,
    list_presets,
    sparse_attention_forward,
)


class PeakMemory(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the block and still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: dict[int, int] = {}

    def _free(self, key: int, size: int) -> None:
        self.live -= size
        self._seen.pop(key, None)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        # views and in-place results share an argument's storage: no new memory
        shared = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._seen and key not in shared:
                    size = storage.nbytes()
                    self._seen[key] = size
                    self.live += size
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, size)
        return out


def timed_ms(call: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def interleaved_ms(
    calls: dict[str, Callable[[], object]],
    repeats: int,
    device: torch.device,
    min_seconds: float = 0.0,
) -> dict[str, list[float]]:
    """ms of every call per round, the calls taking turns round by round (after one warm-up
    each), so a busy machine slows them alike and per-round ratios stay comparable. At least
    `repeats` rounds, and more while the rounds took less than `min_seconds`: a decode step's
    few milliseconds get hundreds of rounds, whose median a noisy host moves far less."""
    for call in calls.values():
        call()  # warm-up: allocations, caches
    times: dict[str, list[float]] = {name: [] for name in calls}
    start = time.perf_counter()
    rounds = 0
    while rounds < repeats or time.perf_counter() - start < min_seconds:
        for name, call in calls.items():
            times[name].append(timed_ms(call, device))
        rounds += 1
    return times


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
    weights = directory / f"hat-{heads}.safetensors"
    save_file(tensors, str(weights))
    channels = directory / f"channels-{heads}.json"
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


def all_configs(directory: Path, layer: int, heads: int, dim: int) -> dict[str, Any]:
    configs: dict[str, Any] = {name: get_preset(name) for name in list_presets() if name != "dense"}
    configs.update(file_configs(directory, layer, heads, dim))
    return configs


def inputs(
    shape: tuple[int, int, int, int, int], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    heads, kv_heads, q_len, n_keys, dim = shape
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, heads, q_len, dim, generator=generator)
    k = torch.randn(1, kv_heads, n_keys, dim, generator=generator)
    v = torch.randn(1, kv_heads, n_keys, dim, generator=generator)
    return q.to(device, dtype), k.to(device, dtype), v.to(device, dtype)


def sparse_call(
    config: Any, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any
) -> Callable[[], object]:
    state = SparseState()
    state.begin_question("bench", 0)
    return partial(
        sparse_attention_forward,
        *(q, k, v, None, q.shape[-1] ** -0.5),
        layer_idx=layer,
        config=config,
        state=state,
        **kwargs,
    )


def sdpa_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Callable[[], object]:
    q_len, n_keys = q.shape[2], k.shape[2]
    rows = torch.arange(q_len, device=q.device)[:, None] + (n_keys - q_len)
    causal = torch.arange(n_keys, device=q.device)[None, :] <= rows
    mask = None if q_len == 1 else causal
    return partial(torch.nn.functional.scaled_dot_product_attention, q, k, v, mask, enable_gqa=True)


def peak_mib(call: Callable[[], object]) -> float:
    with PeakMemory() as meter:
        call()
    return meter.peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--queries", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=5, help="rounds per case, at least")
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=3.0,
        help="more rounds while a case's rounds took less than this (0: exactly --repeats)",
    )
    parser.add_argument("--heads", type=int, default=9)
    parser.add_argument("--kv-heads", type=int, default=3)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--layer", type=int, default=5, help="layer index (not in dense_layers)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = stable timings)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--only", nargs="*", help="masker configs to run (default: all)")
    parser.add_argument("--memory-mib", type=int, default=DEFAULT_MEMORY_MIB)
    parser.add_argument("--long-keys", type=int, default=131072, help="0 skips the long case")
    parser.add_argument("--long-queries", type=int, default=256)
    parser.add_argument("--long-heads", type=int, default=32)
    parser.add_argument("--long-kv-heads", type=int, default=8)
    parser.add_argument(
        "--malloc-default",
        action="store_true",
        help="leave glibc's malloc thresholds as they are (sah's CPU workers raise them)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kept = False if args.malloc_default else keep_freed_memory()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    directory = tempfile.TemporaryDirectory()
    work = Path(directory.name)
    configs = all_configs(work, args.layer, args.heads, args.head_dim)
    names = [n for n in configs if not args.only or n in args.only]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}, {args.dtype}, "
        f"B=1, H={args.heads}, H_kv={args.kv_heads}, D={args.head_dim}, layer {args.layer}, "
        f"budget {args.memory_mib} MiB, freed memory kept: {kept}; "
        "ms per call (x sdpa) and peak extra MiB per call"
    )
    cases = [(q_len, n) for q_len in args.queries for n in args.keys]
    header = f"{'method':<16}" + "".join(f"{f'Q={q} N={n // 1024}k':>26}" for q, n in cases)
    print(header)
    print("-" * len(header))
    rows: dict[str, list[str]] = {"sdpa": []}
    rows.update({name: [] for name in names})
    rows["(rounds)"] = []
    for q_len, n_keys in cases:
        shape = (args.heads, args.kv_heads, q_len, n_keys, args.head_dim)
        q, k, v = inputs(shape, device, dtype)
        calls = {"sdpa": sdpa_call(q, k, v)}
        for name in names:
            calls[name] = sparse_call(
                configs[name], args.layer, q, k, v, memory_mib=args.memory_mib
            )
        times = interleaved_ms(calls, args.repeats, device, args.min_seconds)
        base = statistics.median(times["sdpa"])
        rows["sdpa"].append(f"{base:>9.2f} ms        {peak_mib(calls['sdpa']):>6.0f} M")
        for name in names:
            ms = statistics.median(times[name])
            ratio = statistics.median(
                a / b for a, b in zip(times[name], times["sdpa"], strict=True)
            )
            memory = peak_mib(calls[name])
            rows[name].append(f"{ms:>9.2f} ms ({ratio:>5.2f}x) {memory:>6.0f} M")
        rows["(rounds)"].append(str(len(times["sdpa"])))
    for name, cells in rows.items():
        print(f"{name:<16}" + "".join(f"{cell:>26}" for cell in cells))
    if args.long_keys:
        long_case(args, device, dtype, work, names)
    directory.cleanup()


def long_case(
    args: argparse.Namespace, device: torch.device, dtype: torch.dtype, work: Path, names: list[str]
) -> None:
    """Peak extra memory of one question-prefill call at a long context, against the budget."""
    shape = (args.long_heads, args.long_kv_heads, args.long_queries, args.long_keys, args.head_dim)
    q, k, v = inputs(shape, device, dtype)
    configs = all_configs(work, args.layer, args.long_heads, args.head_dim)
    entry = args.long_heads * args.long_queries * args.long_keys * 4 / 2**20
    print(
        f"\none call, Q={args.long_queries}, N={args.long_keys}, H={args.long_heads}, "
        f"H_kv={args.long_kv_heads}: a (B, H, Q, N) float32 tensor is {entry:.0f} MiB; "
        f"budget {args.memory_mib} MiB"
    )
    for name in names:
        start = time.perf_counter()
        call = sparse_call(configs[name], args.layer, q, k, v, memory_mib=args.memory_mib)
        memory = peak_mib(call)
        verdict = "within" if memory <= args.memory_mib else "OVER"
        seconds = time.perf_counter() - start
        print(f"  {name:<16} peak {memory:>8.0f} MiB  {verdict} budget   ({seconds:.0f} s)")


if __name__ == "__main__":
    with torch.inference_mode():  # as the adapter runs the model (adapters/hf.py)
        main()
