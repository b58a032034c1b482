"""Our masked attention against the public sparse-attention-hub's, on the same inputs (CPU).

The public implementation (github.com/xAlg-ai/sparse-attention-hub) is a package named
`sparse_attention_hub` too, so every measurement runs in a process of its own: this script starts
itself once per (side, preset, Q, N), the reference side with `--reference` (a checkout holding
its `sparse_attention_hub/` folder) and any `--extra-path` folders (its dependencies) first on the
import path. Both sides get one thread, `torch.inference_mode()`, glibc told to keep freed memory
(as `sah`'s CPU workers do, adapters/cpu_memory.py; here through glibc's environment variables,
so both sides get the same), the same random q, k, v of SmolLM2's shapes (H=9, H_kv=3, D=64) and
the same additive causal mask; `--mask none` gives our side no mask instead, which is what our
adapter passes for a plain causal one (docs/methods.md §5.1). The reference's configs below have
our presets' budgets. Rounds take the sides in turn; the table gives each side's median ms per
call over the rounds and ours / reference per round.

    python benchmarks/reference_hub.py --reference ~/src/sparse-attention-hub \
        [--presets vattention random_sampling] [--keys 4096 16384] [--queries 1 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

KEEP_FREED_MEMORY = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
}
_MASKERS = "sparse_attention_hub.sparse_attention.research_attention.maskers"
_MODULES = {
    "fixed": f"{_MASKERS}.fixed.implementations",
    "top_p": f"{_MASKERS}.fixed.implementations.oracle_top_p",
    "quest": f"{_MASKERS}.fixed.implementations.quest_top_k",
    "sampling": f"{_MASKERS}.sampling.implementations",
}


def _window(m: SimpleNamespace, window: float = 64) -> list[Any]:
    return [m.fixed.SinkMaskerConfig(sink_size=4), m.fixed.LocalMaskerConfig(window_size=window)]


REFERENCE: dict[str, Callable[[SimpleNamespace], list[Any]]] = {
    "streaming": lambda m: _window(m, 0.1),
    "oracle_topk": lambda m: [*_window(m), m.fixed.OracleTopKConfig(heavy_size=0.1)],
    "oracle_topp": lambda m: [*_window(m), m.top_p.OracleTopPMaskerConfig(top_p=0.9)],
    "quest": lambda m: [m.quest.QuestTopKMaskerConfig(heavy_size=0.1, page_size=16)],
    "random_sampling": lambda m: [
        *_window(m),
        m.sampling.RandomSamplingMaskerConfig(sampling_rate=0.1),
    ],
    "vattention": lambda m: [
        *_window(m),
        m.fixed.OracleTopKConfig(heavy_size=0.05),
        m.sampling.AdaptiveSamplingMaskerConfig(
            base_rate_sampling=0.05, epsilon=0.05, delta=0.05, init_offset=4, local_offset=64
        ),
    ],
    "magicpig": lambda m: [*_window(m), m.sampling.MagicPigConfig(lsh_l=150, lsh_k=10)],
}
"""Our presets whose method the reference implements, as its masker configs with the same
budgets (sparse_attention/presets.py); `m` holds the reference's modules of `_MODULES`."""


def reference_maskers(preset: str) -> list[Any]:
    """The reference's masker configs for `preset`; imported here, since only the reference
    side's process has the reference on its path."""
    modules = {name: importlib.import_module(path) for name, path in _MODULES.items()}
    return REFERENCE[preset](SimpleNamespace(**modules))


def attention_call(side: str, preset: str, q_len: int, n_keys: int, mask: str) -> Callable[[], Any]:
    """One layer call (layer 5) of `side` over seeded inputs."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, 9, q_len, 64, generator=generator)
    k = torch.randn(1, 3, n_keys, 64, generator=generator)
    v = torch.randn(1, 3, n_keys, 64, generator=generator)
    rows = torch.arange(q_len)[:, None] + (n_keys - q_len)
    allowed = torch.arange(n_keys)[None, :] <= rows
    additive = torch.zeros(1, 1, q_len, n_keys).masked_fill(~allowed, torch.finfo(q.dtype).min)
    scaling = 64**-0.5
    if side == "ours":
        from sparse_attention_hub.sparse_attention import (
            SparseState,
            get_preset,
            sparse_attention_forward,
        )

        config, state = get_preset(preset), SparseState()
        state.begin_question("bench", 0)
        ours_mask = None if mask == "none" else additive
        return lambda: sparse_attention_forward(
            q, k, v, ours_mask, scaling, layer_idx=5, config=config, state=state
        )
    from sparse_attention_hub.sparse_attention.research_attention import (
        ResearchAttention,
        ResearchAttentionConfig,
    )

    attention = ResearchAttention.create_from_config(
        ResearchAttentionConfig(masker_configs=reference_maskers(preset))
    )
    module = torch.nn.Module().eval()
    metadata: dict[str, Any] = {}
    return lambda: attention.custom_attention(
        module, q, k, v, additive, scaling, 0.0, metadata, layer_idx=5
    )


def worker(side: str, preset: str, q_len: int, n_keys: int, mask: str, seconds: float) -> None:
    """Print one JSON line: the median ms per call of `side` (calls for at least `seconds`)."""
    torch.set_num_threads(1)
    with torch.inference_mode():
        call = attention_call(side, preset, q_len, n_keys, mask)
        for _ in range(3):
            call()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 5 or time.perf_counter() - start < seconds:
            began = time.perf_counter()
            call()
            times.append((time.perf_counter() - began) * 1e3)
    print(json.dumps({"ms": statistics.median(times), "calls": len(times)}))


def measure(args: argparse.Namespace, side: str, preset: str, q_len: int, n_keys: int) -> float:
    here = Path(__file__).resolve()
    paths = [str(here.parents[1] / "src")] if side == "ours" else [args.reference, *args.extra_path]
    env = {**os.environ, **KEEP_FREED_MEMORY, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, str(here), "--worker", side, preset, str(q_len), str(n_keys)]
    command += ["--mask", args.mask, "--seconds", str(args.seconds)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} {preset} Q={q_len} N={n_keys} failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reference", help="a checkout of the public sparse-attention-hub")
    parser.add_argument("--extra-path", nargs="*", default=[], help="its dependencies' folders")
    parser.add_argument("--presets", nargs="+", default=list(REFERENCE), choices=REFERENCE)
    parser.add_argument("--keys", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--queries", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per measurement")
    parser.add_argument("--mask", choices=["additive", "none"], default="additive")
    parser.add_argument(
        "--worker", nargs=4, metavar=("SIDE", "PRESET", "Q", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        side, preset, q_len, n_keys = args.worker[0], args.worker[1], *map(int, args.worker[2:4])
        worker(side, preset, q_len, n_keys, args.mask, args.seconds)
        return
    if not args.reference or not (Path(args.reference) / "sparse_attention_hub").is_dir():
        parser.error(
            f"--reference must be a folder holding sparse_attention_hub/, got {args.reference!r}"
        )
    cases = [(p, q, n) for p in args.presets for q in args.queries for n in args.keys]
    times: dict[tuple[str, int, int, str], list[float]] = {}
    for _ in range(args.rounds):
        for preset, q_len, n_keys in cases:
            for side in ("ours", "reference"):
                ms = measure(args, side, preset, q_len, n_keys)
                times.setdefault((preset, q_len, n_keys, side), []).append(ms)
    print(
        f"one layer call, H=9, H_kv=3, D=64, one thread, mask to ours: {args.mask}; "
        f"median ms over {args.rounds} rounds, ours / reference per round"
    )
    print(f"{'preset':16s} {'case':13s} {'ours':>9s} {'reference':>10s} {'ratio':>6s}  rounds")
    for preset, q_len, n_keys in cases:
        ours, ref = (times[(preset, q_len, n_keys, s)] for s in ("ours", "reference"))
        ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(ours, ref, strict=True))
        ratio = statistics.median(ours) / statistics.median(ref)
        print(
            f"{preset:16s} Q={q_len:<3d} N={n_keys:<6d} {statistics.median(ours):9.2f} "
            f"{statistics.median(ref):10.2f} {ratio:6.2f}  {ratios}"
        )


if __name__ == "__main__":
    main()
