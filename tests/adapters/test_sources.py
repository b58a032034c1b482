"""Model names: what each resolves to, and errors raised before anything heavy is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparse_attention_hub.adapters import sources
from sparse_attention_hub.adapters.sources import ModelSource, resolve_model_source
from sparse_attention_hub.errors import ConfigError, ModelLoadError, UnknownNameError


def test_alias_resolves_to_the_shipped_gguf(smollm2_gguf: Path) -> None:
    source = resolve_model_source("smollm2-135m-instruct")
    assert source == ModelSource("smollm2-135m-instruct", "gguf", str(smollm2_gguf.resolve()))


def test_local_directory_and_gguf_file(tiny_llama_dir: Path, smollm2_gguf: Path) -> None:
    assert resolve_model_source(str(tiny_llama_dir)).kind == "local"
    assert resolve_model_source(str(smollm2_gguf)).kind == "gguf"


def test_hub_id() -> None:
    assert resolve_model_source("meta-llama/Llama-3.1-8B-Instruct") == ModelSource(
        "meta-llama/Llama-3.1-8B-Instruct", "hub", "meta-llama/Llama-3.1-8B-Instruct"
    )


def test_unknown_alias_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="smollm2-135m-instruct"):
        resolve_model_source("smollm3")


@pytest.mark.parametrize("name", ["/no/such/model", "./missing-dir", "weights.gguf", "a/b/c", ""])
def test_missing_paths_and_bad_names(name: str) -> None:
    with pytest.raises(ConfigError):
        resolve_model_source(name)


def test_directory_without_config_and_non_gguf_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config\.json"):
        resolve_model_source(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"not a \.gguf"):
        resolve_model_source(str(tmp_path / "weights.bin"))


def test_alias_without_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sources.MODEL_ALIASES, "ghost", ("no_such_package_sah", "m.gguf"))
    with pytest.raises(ConfigError, match="no-such-package-sah"):
        resolve_model_source("ghost")


def test_adapter_fails_before_loading(
    monkeypatch: pytest.MonkeyPatch, tiny_llama_dir: Path
) -> None:
    from sparse_attention_hub.adapters import hf

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("loading started")

    monkeypatch.setattr(hf, "load_model", forbidden)
    monkeypatch.setattr(hf, "load_tokenizer", forbidden)
    with pytest.raises(UnknownNameError):
        hf.ModelAdapterHF("not-a-model")
    with pytest.raises(ConfigError, match="does not exist"):
        hf.ModelAdapterHF("/no/such/dir")
    with pytest.raises(ConfigError, match="ResearchAttentionConfig"):
        hf.ModelAdapterHF(str(tiny_llama_dir), {"masker_configs": []})  # type: ignore[arg-type]


def test_hub_source_goes_to_from_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real hub-loading call, without network: kwargs are passed through, copied."""
    from transformers import AutoModelForCausalLM

    seen: list[tuple[str, dict[str, Any]]] = []

    def fake(location: str, **kwargs: Any) -> str:
        seen.append((location, kwargs))
        kwargs["mutated"] = True
        return "model"

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake)
    model_kwargs = {"dtype": "bfloat16"}
    assert sources.load_model(resolve_model_source("org/model"), model_kwargs) == "model"
    assert seen[0][0] == "org/model" and model_kwargs == {"dtype": "bfloat16"}

    def offline(location: str, **kwargs: Any) -> None:
        raise OSError("no network")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", offline)
    with pytest.raises(ModelLoadError, match="org/model"):
        sources.load_model(resolve_model_source("org/model"))


def test_loading_prints_no_progress_bar_and_restores_the_hook(
    tiny_llama_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from transformers.utils import logging as hf_logging

    def users_hook(factory: Any, args: Any, kwargs: Any) -> Any:
        return factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(users_hook)
    try:
        capfd.readouterr()
        sources.load_model(resolve_model_source(str(tiny_llama_dir)))
        assert "Loading weights" not in capfd.readouterr().err
        assert hf_logging.set_tqdm_hook(users_hook) is users_hook  # the user's hook is back
        with pytest.raises(RuntimeError, match="inside"), sources.quiet_progress_bars():
            raise RuntimeError("inside")
        assert hf_logging.set_tqdm_hook(users_hook) is users_hook
    finally:
        hf_logging.set_tqdm_hook(previous)
