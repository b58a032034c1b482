"""The context cache: per-layer rewind, refused layer kinds, sliding-window models end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from sparse_attention_hub.adapters.base import Request
from sparse_attention_hub.adapters.context_cache import (
    SPARE_POSITIONS,
    PrefilledContext,
    check_cache_layers,
    new_cache,
)
from sparse_attention_hub.adapters.hf import ModelAdapterHF
from sparse_attention_hub.adapters.prompting import encode_request
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.sparse_attention import (
    LocalMaskerConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)


def kv(n: int, fill: float) -> torch.Tensor:
    return torch.full((1, 2, n, 4), fill)


def test_rewind_restores_the_exact_context_keys() -> None:
    cache = new_cache()
    for layer in range(2):
        cache.update(torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4), layer_idx=layer)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
    context = PrefilledContext(cache, 5, None)
    for layer in range(2):
        cache.update(kv(3, 9.0), kv(3, 9.0), layer_idx=layer)
    context.rewind()
    context.rewind()  # nothing past the context: a no-op
    for layer, (keys, values) in zip(cache.layers, before, strict=True):
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)


def test_appends_equal_concatenation_and_stay_in_one_buffer() -> None:
    """Prefill, decode steps, a rewind, a second question, a reorder, a reset: the layer always
    holds what `torch.cat` would, and a decode step writes into the buffer it already has."""
    generator = torch.Generator().manual_seed(0)

    def chunk(n: int) -> torch.Tensor:
        return torch.randn(1, 2, n, 4, generator=generator)

    cache = new_cache()
    layer_keys, layer_values = chunk(6), chunk(6)
    cache.update(layer_keys, layer_values, layer_idx=0)
    context = PrefilledContext(cache, 6, None)
    layer = cache.layers[0]
    buffer = layer.keys.data_ptr()
    expected_k, expected_v = layer_keys, layer_values
    for step in range(3):  # one question: a 2-token prefill, then decode steps
        new_k, new_v = chunk(2 if step == 0 else 1), chunk(2 if step == 0 else 1)
        keys, values = cache.update(new_k, new_v, layer_idx=0)
        expected_k, expected_v = (
            torch.cat([expected_k, new_k], -2),
            torch.cat([expected_v, new_v], -2),
        )
        assert torch.equal(keys, expected_k) and torch.equal(values, expected_v)
        assert keys.data_ptr() == buffer  # written in place, not copied
    context.rewind()
    assert torch.equal(layer.keys, layer_keys) and torch.equal(layer.values, layer_values)
    new_k, new_v = chunk(1), chunk(1)  # the next question writes over what was cut
    keys, _ = cache.update(new_k, new_v, layer_idx=0)
    assert torch.equal(keys, torch.cat([layer_keys, new_k], -2)) and keys.data_ptr() == buffer
    layer.batch_repeat_interleave(2)  # tensors replaced from outside: a new buffer from them
    doubled = layer.keys.clone()
    keys, _ = cache.update(chunk(1).repeat(2, 1, 1, 1), chunk(1).repeat(2, 1, 1, 1), layer_idx=0)
    assert keys.shape == (2, 2, 8, 4) and torch.equal(keys[..., :7, :], doubled)
    layer.reset()
    keys, _ = cache.update(chunk(1), chunk(1), layer_idx=0)
    assert keys.shape == (1, 2, 1, 4)


def test_a_full_buffer_moves_once_to_a_larger_one() -> None:
    cache = new_cache()
    cache.update(kv(4, 1.0), kv(4, 1.0), layer_idx=0)
    first = cache.layers[0].keys.data_ptr()
    for _ in range(SPARE_POSITIONS):  # exactly the spare room
        cache.update(kv(1, 2.0), kv(1, 2.0), layer_idx=0)
    assert cache.layers[0].keys.data_ptr() == first
    keys, _ = cache.update(kv(1, 3.0), kv(1, 3.0), layer_idx=0)
    assert keys.data_ptr() != first and keys.shape[-2] == 4 + SPARE_POSITIONS + 1
    assert torch.equal(keys[..., :4, :], kv(4, 1.0)) and torch.equal(keys[..., -1:, :], kv(1, 3.0))


def test_rewind_measures_each_layer() -> None:
    """Layer 0 holds no keys (it reports length 0): the other layers must still be cut back."""
    cache = new_cache()
    cache.update(kv(4, 1.0), kv(4, 1.0), layer_idx=1)
    assert not cache.layers[0].is_initialized and cache.get_seq_length() == 0
    context = PrefilledContext(cache, 4, None)
    cache.update(kv(2, 2.0), kv(2, 2.0), layer_idx=1)
    context.rewind()
    assert cache.layers[1].get_seq_length() == 4
    assert torch.equal(cache.layers[1].keys, kv(4, 1.0))


def test_rewind_refuses_a_layer_that_lost_context_positions() -> None:
    cache = new_cache()
    cache.update(kv(2, 1.0), kv(2, 1.0), layer_idx=0)
    with pytest.raises(RuntimeError, match="layer 0"):
        PrefilledContext(cache, 5, None).rewind()


def test_supported_and_refused_layer_kinds() -> None:
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    check_cache_layers(LlamaConfig(num_hidden_layers=2))
    check_cache_layers(MistralConfig(num_hidden_layers=2, sliding_window=8))
    check_cache_layers(
        Qwen2Config(
            num_hidden_layers=2,
            layer_types=["sliding_attention", "full_attention"],
            sliding_window=8,
        )
    )
    linear = LlamaConfig(num_hidden_layers=2)
    linear.layer_types = ["full_attention", "linear_attention"]
    with pytest.raises(ConfigError, match="linear_attention"):
        check_cache_layers(linear)
    shared = LlamaConfig(num_hidden_layers=2)
    shared.kv_sharing_modes = ["store", "reuse"]
    with pytest.raises(ConfigError, match="shares KV"):
        check_cache_layers(shared)


@pytest.fixture(scope="module")
def sliding_adapter(
    tmp_path_factory: pytest.TempPathFactory, chat_tokenizer: Any
) -> Iterator[ModelAdapterHF]:
    """A tiny random Mistral whose 8-token sliding window is far shorter than the context."""
    from transformers import MistralConfig, MistralForCausalLM

    out: Path = tmp_path_factory.mktemp("tiny_mistral")
    config = MistralConfig(
        vocab_size=len(chat_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=8,
        initializer_range=0.15,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    MistralForCausalLM(config).save_pretrained(out)
    chat_tokenizer.save_pretrained(out)
    adapter = ModelAdapterHF(str(out))
    yield adapter
    adapter.close()


CONTEXT = "The museum opened in 1897. Its first curator was Ada Lind. " * 3
QUESTIONS = ["Who was the first curator?", "When did it open?"]


def test_sliding_window_model_equals_a_full_reprefill(sliding_adapter: ModelAdapterHF) -> None:
    adapter = sliding_adapter
    answers = adapter.process_request(
        Request(CONTEXT, QUESTIONS, "A:"), {"max_new_tokens": 4}, {}
    ).response_list()
    encoded = encode_request(adapter.tokenizer, CONTEXT, QUESTIONS, "A:")
    assert len(encoded.context_ids) > 4 * 8  # the window is full long before the questions
    for ids, answer in zip(encoded.question_ids, answers, strict=True):
        prompt = torch.tensor([encoded.context_ids + ids])
        with torch.no_grad():
            full = adapter.model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=4,
                do_sample=False,
                eos_token_id=sorted(adapter.eos_ids),
                pad_token_id=0,
            )
        assert answer == adapter.tokenizer.decode(
            full[0, prompt.shape[1] :], skip_special_tokens=True
        )


def test_sliding_window_model_runs_a_sparse_config(sliding_adapter: ModelAdapterHF) -> None:
    sliding_adapter.set_sparse_attention_config(
        ResearchAttentionConfig(
            masker_configs=[SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=4)]
        )
    )
    try:
        request = Request(CONTEXT, QUESTIONS, "A:", question_ids=["a", "b"])
        together = sliding_adapter.process_request(request, {"max_new_tokens": 3}, {})
        alone = sliding_adapter.process_request(
            Request(CONTEXT, QUESTIONS[1:], "A:", question_ids=["b"]), {"max_new_tokens": 3}, {}
        )
        assert together.response_list()[1:] == alone.response_list()
    finally:
        sliding_adapter.set_sparse_attention_config(None)
