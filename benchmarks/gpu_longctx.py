"""Long-context check of `benchmarks/gpu_smoke.sh`: a small random-weight Llama at 64k-128k tokens.

For each context length the context is prefilled once (native attention), then every attention
config answers one question (32 tokens) and decodes `--steps` tokens from the cache cropped back
to the context, as the adapter does (docs/methods.md §7).
Per run: peak GPU memory (and its excess over
what the run started with), ms per decode step, density, and how many CUDA synchronisations the
decode steps made (`torch.cuda.set_sync_debug_mode`; our attention adds none, the count is what
the model's own code does). Prints `PASS longctx ...` lines, or exits with `FAIL longctx: why`.

    python benchmarks/gpu_longctx.py --device cuda:0 [--keys 65536 131072]
    python benchmarks/gpu_longctx.py --device cpu --keys 2048 --steps 2   # a rehearsal on CPU
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Any

import torch

from sparse_attention_hub.adapters.attention_backend import (
    AttentionRun,
    attention_mode,
    register_attention,
)
from sparse_attention_hub.adapters.context_cache import PrefilledContext, new_cache
from sparse_attention_hub.adapters.hf import cache_kwarg
from sparse_attention_hub.sparse_attention import (
    DEFAULT_MEMORY_MIB,
    AttentionStats,
    SparseState,
    get_preset,
)

QUESTION_TOKENS = 32
CONFIGS = ("dense", "streaming", "oracle_topk")


def tiny_llama(max_positions: int, device: torch.device, dtype: torch.dtype) -> Any:
    """4 layers, 8 query heads over 2 KV heads of 64 dims: the shapes of a real GQA model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1024,
        hidden_size=512,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()


def forward(model: Any, ids: torch.Tensor, cache: Any, start: int) -> torch.Tensor:
    positions = torch.arange(start, start + ids.shape[1], device=ids.device)[None]
    out = model(
        input_ids=ids,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **{cache_kwarg(model): cache},
    )
    return out.logits[0, -1]


def counting_syncs(device: torch.device, call: Any) -> tuple[Any, int]:
    """`call()` and the CUDA synchronisations it made (0 on CPU: nothing to wait for)."""
    if device.type != "cuda":
        return call(), 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, sum("synchroniz" in str(w.message) for w in caught)


def run_config(
    model: Any,
    name: str,
    prefilled: PrefilledContext,
    device: torch.device,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One question and `args.steps` greedy decode steps under one attention config."""
    config = get_preset(name)
    state = SparseState() if config is not None else None
    stats = AttentionStats() if config is not None else None
    if state is not None:
        state.begin_question("q0", 0)
    prefilled.rewind()  # back to the context, as before every question
    cache, context = prefilled.cache, prefilled.length
    run = AttentionRun(config, state, stats, args.memory_mib)
    generator = torch.Generator().manual_seed(1)
    question = torch.randint(0, 1024, (1, QUESTION_TOKENS), generator=generator).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    step_times: list[float] = []
    syncs = 0
    with torch.inference_mode(), attention_mode(model, run):
        if stats is not None:
            stats.set_context("q0", 0, "question_prefill", 0)
        logits = forward(model, question, cache, context)
        position = context + QUESTION_TOKENS
        for step in range(1, args.steps + 1):
            token = logits.argmax().reshape(1, 1)  # stays on the device
            if stats is not None:
                stats.set_context("q0", 0, "decode", step)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            logits, count = counting_syncs(
                device, lambda t=token, p=position: forward(model, t, cache, p)
            )
            syncs += count
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step_times.append(time.perf_counter() - start)
            position += 1
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    density = stats.summary()["density"]["overall"] if stats is not None else 1.0  # read once
    step_times.sort()
    return {
        "config": name,
        "peak_gib": peak / 2**30,
        "extra_gib": (peak - before) / 2**30,
        "ms_per_step": 1e3 * step_times[len(step_times) // 2],
        "density": density,
        "syncs_per_step": syncs / max(1, args.steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--keys", type=int, nargs="+", default=[65536, 131072])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--memory-mib", type=int, default=DEFAULT_MEMORY_MIB)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    register_attention()
    model = tiny_llama(max(args.keys) + QUESTION_TOKENS + args.steps + 8, device, dtype)
    print(f"longctx: {device}, {dtype}, budget {args.memory_mib} MiB per attention call")
    failures = []
    for context in args.keys:
        ids = torch.randint(0, 1024, (1, context), generator=torch.Generator().manual_seed(0))
        cache = new_cache()
        with torch.inference_mode():
            logits = forward(model, ids.to(device), cache, 0)  # native dense, once per context
        prefilled = PrefilledContext(cache, context, logits)
        for name in CONFIGS:
            result = run_config(model, name, prefilled, device, args)
            line = (
                f"N={context} {name}: peak {result['peak_gib']:.2f} GiB "
                f"(+{result['extra_gib']:.2f} GiB in the run), "
                f"{result['ms_per_step']:.1f} ms per decode step, density "
                f"{result['density']:.3f}, {result['syncs_per_step']:.1f} CUDA syncs per step"
            )
            print(f"PASS longctx {line}", flush=True)
            if name != "dense" and not 0.0 < result["density"] < 1.0:
                failures.append(f"{name} at N={context}: density {result['density']}")
        del cache, prefilled
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if failures:
        sys.exit(f"FAIL longctx: {'; '.join(failures)}")


if __name__ == "__main__":
    main()
