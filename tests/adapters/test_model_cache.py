"""GGUF cache: one builder, atomic entries (the content hash: tests/test_hashing.py)."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from sparse_attention_hub.adapters import sources
from sparse_attention_hub.adapters.model_cache import cache_root, ensure_cached_dir
from sparse_attention_hub.adapters.sources import unique_tensors, write_model_dir


def test_cache_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAH_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path / "models"
    monkeypatch.delenv("SAH_CACHE_DIR")
    assert cache_root() == Path.home() / ".cache" / "sparse_attention_hub" / "models"


def test_entry_is_built_once(tmp_path: Path) -> None:
    builds: list[Path] = []

    def build(out: Path) -> None:
        builds.append(out)
        (out / "weights").write_text("w")

    first = ensure_cached_dir("entry", build, tmp_path)
    again = ensure_cached_dir("entry", build, tmp_path)
    assert first == again == tmp_path / "entry"
    assert (first / "weights").read_text() == "w" and len(builds) == 1


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def build(out: Path) -> None:
        (out / "half").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ensure_cached_dir("entry", build, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.lock"]


def test_concurrent_callers_wait_for_one_builder(tmp_path: Path) -> None:
    builds: list[int] = []
    results: list[Path] = []

    def build(out: Path) -> None:
        builds.append(1)
        time.sleep(0.2)
        (out / "done").write_text("1")

    threads = [
        threading.Thread(target=lambda: results.append(ensure_cached_dir("k", build, tmp_path)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and results == [tmp_path / "k"] * 4


def test_unique_tensors_drops_shared_storage() -> None:
    shared = torch.ones(3, 2)
    kept = unique_tensors({"embed": shared, "head": shared, "other": torch.zeros(2)})
    assert list(kept) == ["embed", "other"]


def tied_llama(vocab_size: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(1)
    return LlamaForCausalLM(config).eval()


def test_written_directory_loads_with_tied_weights(tmp_path: Path, chat_tokenizer: Any) -> None:
    from transformers import AutoModelForCausalLM

    model = tied_llama(len(chat_tokenizer))
    write_model_dir(model, chat_tokenizer, tmp_path, {"gguf_file": "x.gguf"})
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([[1, 5, 9, 200]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    assert (tmp_path / "source.json").is_file() and (tmp_path / "tokenizer_config.json").is_file()


def write_tiny_gguf(path: Path) -> None:
    """A 2-layer random Llama GGUF (float32, GQA 4/2 heads) with a byte-level BPE and a template."""
    import gguf
    import numpy as np
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = [*bytes_to_unicode().values(), "Ġt", "<|im_start|>", "<|im_end|>"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(256)
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(16)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 2) + [3, 3])
    writer.add_token_merges(["Ġ t"])
    writer.add_bos_token_id(len(tokens) - 2)
    writer.add_eos_token_id(len(tokens) - 1)
    writer.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (len(tokens), 64), "output_norm.weight": (64,)}
    for i in range(2):  # no output.weight: the LM head is tied to the embeddings
        shapes |= {
            f"blk.{i}.attn_norm.weight": (64,),
            f"blk.{i}.attn_q.weight": (64, 64),
            f"blk.{i}.attn_k.weight": (32, 64),
            f"blk.{i}.attn_v.weight": (32, 64),
            f"blk.{i}.attn_output.weight": (64, 64),
            f"blk.{i}.ffn_norm.weight": (64,),
            f"blk.{i}.ffn_gate.weight": (128, 64),
            f"blk.{i}.ffn_up.weight": (128, 64),
            f"blk.{i}.ffn_down.weight": (64, 128),
        }
    for name, shape in shapes.items():
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.3).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_tiny_gguf_is_dequantised_once_then_loaded_from_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sparse_attention_hub.adapters.base import Request
    from sparse_attention_hub.adapters.hf import ModelAdapterHF

    monkeypatch.setenv("SAH_CACHE_DIR", str(tmp_path / "cache"))
    gguf_file = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_file)
    reads: list[Path] = []
    real_read = sources.read_gguf

    def counting_read(path: Path) -> tuple[Any, Any]:
        reads.append(path)
        return real_read(path)

    monkeypatch.setattr(sources, "read_gguf", counting_read)
    first = ModelAdapterHF(str(gguf_file))
    second = ModelAdapterHF(str(gguf_file))
    assert len(reads) == 1 and first.describe()["source_kind"] == "gguf"
    digest = hashlib.sha256(gguf_file.read_bytes()).hexdigest()
    entry = tmp_path / "cache" / "models" / f"gguf-{digest[:32]}"
    assert {"config.json", "model.safetensors", "source.json", "tokenizer.json"} <= {
        p.name for p in entry.iterdir()
    }
    model = second.model
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    cold, tokenizer = real_read(gguf_file)
    ids = torch.tensor([tokenizer("the tiny model").input_ids])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, cold.eval()(ids).logits)
    answer = second.process_request(
        Request("some context", "a question?"), {"max_new_tokens": 3}, {}
    )
    assert isinstance(answer.responses, str)


def test_leftovers_of_a_killed_builder_are_removed(tmp_path: Path) -> None:
    leftover = tmp_path / ".entry.tmp-dead"
    leftover.mkdir()
    (leftover / "half").write_text("partial")
    other = tmp_path / ".other.tmp-alive"  # another key's builder: not ours to touch
    other.mkdir()

    def build(out: Path) -> None:
        (out / "w").write_text("w")

    ensure_cached_dir("entry", build, tmp_path)
    assert not leftover.exists() and other.is_dir()
