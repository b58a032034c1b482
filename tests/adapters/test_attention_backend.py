"""Our attention backend: registration, switching, and dense numerics equal to sdpa."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sparse_attention_hub.adapters.attention_backend import (
    ATTENTION_NAME,
    AttentionRun,
    attention_mode,
    causal_or_sdpa_mask,
    register_attention,
    sah_attention_forward,
)


@pytest.fixture(scope="module")
def tiny_model(tiny_llama_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    register_attention()
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()


def test_function_and_mask_are_registered_under_one_name() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    register_attention()
    assert AttentionInterface._global_mapping[ATTENTION_NAME] is sah_attention_forward
    assert ALL_MASK_ATTENTION_FUNCTIONS._global_mapping[ATTENTION_NAME] is causal_or_sdpa_mask


def test_mode_restores_the_native_implementation_after_errors(tiny_model: Any) -> None:
    assert tiny_model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError, match="boom"), attention_mode(tiny_model, AttentionRun()):
        assert tiny_model.config._attn_implementation == ATTENTION_NAME
        assert tiny_model.model.layers[1].self_attn.config._attn_implementation == ATTENTION_NAME
        raise RuntimeError("boom")
    assert tiny_model.config._attn_implementation == "sdpa"


def test_use_outside_the_mode_is_an_error() -> None:
    q = torch.zeros(1, 2, 3, 4)
    with pytest.raises(RuntimeError, match="outside attention_mode"):
        sah_attention_forward(torch.nn.Module(), q, q, q, None)


def test_softcap_is_refused(tiny_model: Any) -> None:
    q = torch.zeros(1, 2, 3, 4)
    with (
        attention_mode(tiny_model, AttentionRun()),
        pytest.raises(NotImplementedError, match="softcap"),
    ):
        sah_attention_forward(torch.nn.Module(), q, q, q, None, softcap=30.0)


def test_dense_function_matches_sdpa_logits(tiny_model: Any) -> None:
    ids = torch.randint(
        0, tiny_model.config.vocab_size, (1, 48), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        reference = tiny_model(ids).logits
        with attention_mode(tiny_model, AttentionRun()):
            ours = tiny_model(ids).logits
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_dense_function_on_a_cached_context_matches_one_pass(tiny_model: Any) -> None:
    """Context in sdpa, the rest through our function with a cache: the causal mask must hold."""
    from transformers import DynamicCache

    ids = torch.randint(
        0, tiny_model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        reference = tiny_model(ids).logits
        cache = DynamicCache()
        tiny_model(ids[:, :30], past_key_values=cache, use_cache=True)
        with attention_mode(tiny_model, AttentionRun()):
            rest = tiny_model(
                ids[:, 30:],
                past_key_values=cache,
                use_cache=True,
                position_ids=torch.arange(30, 40)[None],
            ).logits
    torch.testing.assert_close(rest, reference[:, 30:], rtol=1e-5, atol=1e-5)


def masks_seen(
    model: Any, monkeypatch: pytest.MonkeyPatch, padding: torch.Tensor | None = None
) -> list[tuple[int, int, torch.Tensor | None]]:
    """(Q, N, mask) of every call of our function: a 10-token question prefilled over a cached
    30-token context, then one decode step; `padding` is the 2D attention mask of all 41 tokens."""
    from transformers import DynamicCache

    from sparse_attention_hub.adapters import attention_backend

    seen: list[tuple[int, int, torch.Tensor | None]] = []
    real = attention_backend.dense_attention

    def spy(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any, scaling: float, *rest: Any
    ) -> Any:
        seen.append((q.shape[2], k.shape[2], mask))
        return real(q, k, v, mask, scaling, *rest)

    monkeypatch.setattr(attention_backend, "dense_attention", spy)
    ids = torch.randint(
        0, model.config.vocab_size, (1, 41), generator=torch.Generator().manual_seed(2)
    )
    extra: dict[str, Any] = {}
    with torch.no_grad():
        cache = DynamicCache()
        if padding is not None:
            extra = {"attention_mask": padding[:, :30]}
        model(ids[:, :30], past_key_values=cache, use_cache=True, **extra)
        assert seen == []  # the context prefill stays on the native implementation
        with attention_mode(model, AttentionRun()):
            if padding is not None:
                extra = {"attention_mask": padding[:, :40]}
            model(
                ids[:, 30:40],
                past_key_values=cache,
                position_ids=torch.arange(30, 40)[None],
                **extra,
            )
            if padding is not None:
                extra = {"attention_mask": padding}
            model(ids[:, 40:], past_key_values=cache, position_ids=torch.tensor([[40]]), **extra)
    monkeypatch.undo()
    return seen


def test_a_question_over_a_cached_context_gets_no_mask(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain causal masks arrive as None (row i at N - Q + i), for the prefill as for decode, so
    the sparse gathered path can run (docs/methods.md §5.1); outputs stay those of sdpa's mask
    (test_dense_function_on_a_cached_context_matches_one_pass). Without a mask function
    registered under `ATTENTION_NAME`, transformers would hand no mask to any call, padding or
    not."""
    seen = masks_seen(tiny_model, monkeypatch)
    layers = tiny_model.config.num_hidden_layers
    assert len(seen) == 2 * layers
    assert all((q, k, m) == (10, 40, None) for q, k, m in seen[:layers])
    assert all((q, k, m) == (1, 41, None) for q, k, m in seen[layers:])


def test_a_padded_question_gets_sdpa_boolean_mask(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    padding = torch.ones(1, 41, dtype=torch.long)
    padding[0, :3] = 0  # three left-padding tokens
    seen = masks_seen(tiny_model, monkeypatch, padding)
    layers = tiny_model.config.num_hidden_layers
    for q_len, k_len, mask in seen[:layers]:
        assert (q_len, k_len) == (10, 40)
        assert mask is not None and mask.dtype == torch.bool and mask.shape == (1, 1, 10, 40)
        expected = torch.arange(40)[None, :] <= torch.arange(30, 40)[:, None]  # row i at 30 + i
        expected[:, :3] = False
        assert torch.equal(mask[0, 0], expected)
    assert all(m is not None for _, _, m in seen[layers:])


def test_a_model_that_cannot_switch_is_refused(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers only warns and keeps the native attention; we must not run "sparse" dense."""
    monkeypatch.setattr(
        type(tiny_model), "_can_set_attn_implementation", classmethod(lambda cls: False)
    )
    with (
        pytest.raises(NotImplementedError, match="cannot switch"),
        attention_mode(tiny_model, AttentionRun()),
    ):
        pass
    assert tiny_model.config._attn_implementation == "sdpa"
