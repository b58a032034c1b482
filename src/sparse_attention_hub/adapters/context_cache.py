"""The context's KV cache, rewound before every question (docs/methods.md §7 step 5).

The cache is a plain `DynamicCache()` built without the model config, so every layer keeps every
key: sliding-window and chunked layers get their window from the attention mask, not from a
bounded cache, which transformers could not crop back once the window is full. Layer kinds that
hold no per-token keys (linear attention, shared KV, indexers) cannot be rewound and are refused
before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sparse_attention_hub.errors import ConfigError

# transformers' `layer_types` values whose keys live in an ordinary, croppable DynamicLayer
SUPPORTED_LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")


def check_cache_layers(config: Any) -> None:
    """Refuse models whose layers the per-question rewind cannot handle (`ConfigError`)."""
    text_config = config.get_text_config(decoder=True)
    layer_types = list(getattr(text_config, "layer_types", None) or [])
    unsupported = sorted(set(layer_types) - set(SUPPORTED_LAYER_TYPES))
    if unsupported:
        raise ConfigError(
            f"{config.model_type!r} has layer types {unsupported}; the context cache is rewound per "
            f"question, which works for {', '.join(SUPPORTED_LAYER_TYPES)} only"
        )
    if "reuse" in (getattr(text_config, "kv_sharing_modes", None) or ()):
        raise ConfigError(f"{config.model_type!r} shares KV caches between layers; not supported")


def new_cache() -> Any:
    """An empty cache whose every layer keeps all keys (see the module docstring)."""
    from transformers import DynamicCache

    return DynamicCache()


@dataclass
class PrefilledContext:
    """The KV cache after the context prefill, its length, and its last-position logits."""

    cache: Any  # transformers DynamicCache
    length: int
    last_logits: torch.Tensor | None  # None for an empty context

    def rewind(self) -> None:
        """Drop every position past the context, layer by layer.

        transformers' `crop` takes -n_to_remove (a positive value is refused); each layer is
        measured on its own, since layer 0 need not hold keys (an uninitialised layer reports 0).
        """
        for index, layer in enumerate(self.cache.layers):
            if not layer.is_initialized:
                continue
            excess = layer.get_seq_length() - self.length
            if excess > 0:
                layer.crop(-excess)
            if layer.get_seq_length() != self.length:
                raise RuntimeError(
                    f"cache layer {index} ({type(layer).__name__}) holds {layer.get_seq_length()} "
                    f"positions after rewinding to the {self.length} context positions"
                )
