"""Cold versus cached load time of the embedded SmolLM2 GGUF model.

Cold = hash the GGUF, de-quantise it, write the cache entry, load from it. Cached = the same call
again (hash record + cache entry reused). Each run uses a fresh cache directory unless --cache-dir.

    .venv/bin/python benchmarks/model_load.py [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from sparse_attention_hub.adapters.sources import load_model, load_tokenizer, resolve_model_source


def timed_load(name: str) -> float:
    start = time.perf_counter()
    source = resolve_model_source(name)
    load_model(source)
    load_tokenizer(source)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument(
        "--cache-dir", default=None, help="reuse this cache (default: a fresh temp dir)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as fresh:
        os.environ["SAH_CACHE_DIR"] = args.cache_dir or fresh
        first = timed_load(args.model)
        second = timed_load(args.model)
    print(f"model: {args.model}")
    print(f"first load (cold unless --cache-dir was warm): {first:6.2f} s")
    print(f"cached load:                                   {second:6.2f} s")


if __name__ == "__main__":
    main()
