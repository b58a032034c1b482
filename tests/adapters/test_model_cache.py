"""GGUF cache: content hash remembered by (path, size, mtime), one builder, atomic entries."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from sparse_attention_hub.adapters import model_cache, sources
from sparse_attention_hub.adapters.model_cache import cache_root, ensure_cached_dir, file_sha256
from sparse_attention_hub.adapters.sources import unique_tensors, write_model_dir


def test_cache_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAH_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path / "models"
    monkeypatch.delenv("SAH_CACHE_DIR")
    assert cache_root() == Path.home() / ".cache" / "sparse_attention_hub" / "models"


def test_hash_is_remembered_until_the_file_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[Path] = []
    real = model_cache.sha256_of_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(model_cache, "sha256_of_file", counting)
    data = tmp_path / "weights.gguf"
    data.write_bytes(os.urandom(3 * (1 << 20) + 17))  # several chunks plus a partial one
    root = tmp_path / "cache"
    digest = file_sha256(data, root)
    assert digest == hashlib.sha256(data.read_bytes()).hexdigest()
    assert file_sha256(data, root) == digest and len(calls) == 1
    data.write_bytes(b"changed")
    assert file_sha256(data, root) == hashlib.sha256(b"changed").hexdigest() and len(calls) == 2


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


def test_gguf_source_uses_the_cache_on_second_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chat_tokenizer: Any
) -> None:
    """The GGUF reader is stubbed (the real file is covered by a slow test): cache logic only."""
    monkeypatch.setenv("SAH_CACHE_DIR", str(tmp_path / "cache"))
    reads: list[Path] = []

    def fake_read(path: Path) -> tuple[Any, Any]:
        reads.append(path)
        return tied_llama(len(chat_tokenizer)), chat_tokenizer

    monkeypatch.setattr(sources, "read_gguf", fake_read)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"not really gguf")
    source = sources.resolve_model_source(str(gguf))
    assert source.kind == "gguf"
    first = sources.load_model(source)
    second = sources.load_model(source)
    tokenizer = sources.load_tokenizer(source)
    assert len(reads) == 1
    digest = hashlib.sha256(b"not really gguf").hexdigest()
    assert sources.loadable_location(source) == str(
        tmp_path / "cache" / "models" / f"gguf-{digest[:32]}"
    )
    torch.testing.assert_close(first.lm_head.weight, second.lm_head.weight)
    assert tokenizer.chat_template == chat_tokenizer.chat_template
