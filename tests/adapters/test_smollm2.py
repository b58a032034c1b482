"""The real embedded model (SmolLM2-135M-Instruct GGUF): cache, numerics, one answer.

The cold de-quantisation test is slow (~30 s); the others load from the user's cache in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from sparse_attention_hub.adapters import sources
from sparse_attention_hub.adapters.attention_backend import AttentionRun, attention_mode
from sparse_attention_hub.adapters.base import Request
from sparse_attention_hub.adapters.hf import ModelAdapterHF
from sparse_attention_hub.sparse_attention import get_preset


@pytest.fixture(scope="module")
def smollm2() -> Iterator[ModelAdapterHF]:
    adapter = ModelAdapterHF("smollm2-135m-instruct")  # the user's cache: cold only the first time
    yield adapter
    adapter.close()


@pytest.mark.slow
def test_gguf_is_dequantised_once_then_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAH_CACHE_DIR", str(tmp_path))
    reads: list[Path] = []
    real_read = sources.read_gguf

    def counting_read(path: Path) -> tuple[Any, Any]:
        reads.append(path)
        return real_read(path)

    monkeypatch.setattr(sources, "read_gguf", counting_read)
    source = sources.resolve_model_source("smollm2-135m-instruct")
    start = time.perf_counter()
    cold = sources.load_model(source)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    cached = sources.load_model(source)
    cached_s = time.perf_counter() - start
    assert len(reads) == 1 and cached_s < cold_s
    torch.testing.assert_close(cold.model.embed_tokens.weight, cached.model.embed_tokens.weight)
    assert cached.lm_head.weight.data_ptr() == cached.model.embed_tokens.weight.data_ptr()


def test_dense_function_matches_sdpa(smollm2: ModelAdapterHF) -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 12
    ids = smollm2.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        reference = smollm2.model(ids).logits
        with attention_mode(smollm2.model, AttentionRun()):
            ours = smollm2.model(ids).logits
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


def test_answers_a_question(smollm2: ModelAdapterHF) -> None:
    request = Request(
        "The Lind Museum opened in Paris in 1897. Its first curator was Ada Lind.\n",
        ["In which city did the museum open?", "Who was the first curator?"],
        "Answer:",
    )
    answers = smollm2.process_request(request, {"max_new_tokens": 16}, {}).response_list()
    assert (
        "Paris" in answers[0] and answers[1].strip()
    )  # a 135M model: only the easy one is checked
    smollm2.set_sparse_attention_config(get_preset("streaming"))
    try:  # the sparse path runs end to end on the real model (a few tokens are enough)
        sparse = smollm2.process_request(request, {"max_new_tokens": 4}, {}).response_list()
    finally:
        smollm2.set_sparse_attention_config(None)
    assert all(isinstance(answer, str) and answer for answer in sparse)
