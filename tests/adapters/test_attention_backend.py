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
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    register_attention()
    assert AttentionInterface._global_mapping[ATTENTION_NAME] is sah_attention_forward
    assert ALL_MASK_ATTENTION_FUNCTIONS._global_mapping[ATTENTION_NAME] is sdpa_mask


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


def test_masks_our_function_receives_over_a_cached_context(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Question prefill gets sdpa's boolean causal mask found under our name; decode gets None.

    Without the mask function registered under `ATTENTION_NAME`, transformers hands the prefill
    no mask at all and the question would attend to its own future tokens.
    """
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
        0, tiny_model.config.vocab_size, (1, 41), generator=torch.Generator().manual_seed(2)
    )
    layers = tiny_model.config.num_hidden_layers
    with torch.no_grad():
        cache = DynamicCache()
        tiny_model(ids[:, :30], past_key_values=cache, use_cache=True)
        assert seen == []  # the context prefill stays on the native implementation
        with attention_mode(tiny_model, AttentionRun()):
            tiny_model(
                ids[:, 30:40], past_key_values=cache, position_ids=torch.arange(30, 40)[None]
            )
            tiny_model(ids[:, 40:], past_key_values=cache, position_ids=torch.tensor([[40]]))
    assert len(seen) == 2 * layers
    for q_len, k_len, mask in seen[:layers]:
        assert (q_len, k_len) == (10, 40)
        assert mask is not None and mask.dtype == torch.bool and mask.shape == (1, 1, 10, 40)
        expected = torch.arange(40)[None, :] <= torch.arange(30, 40)[:, None]  # row i at 30 + i
        assert torch.equal(mask[0, 0], expected)
    assert all((q, k, m) == (1, 41, None) for q, k, m in seen[layers:])


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
