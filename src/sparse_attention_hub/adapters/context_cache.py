"""The context's KV cache, rewound before every question (docs/methods.md §7 step 5).

The cache is a plain `DynamicCache()` built without the model config, so every layer keeps every
key: sliding-window and chunked layers get their window from the attention mask, not from a
bounded cache, which transformers could not crop back once the window is full. Layer kinds that
hold no per-token keys (linear attention, shared KV, indexers) cannot be rewound and are refused
before anything runs.
"""

from __future__ import annotations

import functools
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
    """An empty cache whose every layer keeps all keys (see the module docstring) and appends
    new keys in place (`appending_layer`)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layer_class_to_replicate = appending_layer()  # layers are made on first update
    return cache


SPARE_POSITIONS = 256
"""Room a cache layer keeps for positions to come beyond what it holds (plus 1/64 of that), so a
decode step writes its key in place; a layer that runs out copies itself once into a larger
buffer."""


@functools.cache
def appending_layer() -> type:
    """transformers' `DynamicLayer` with in-place appends.

    `DynamicLayer.update` concatenates: every decode step copies the layer's whole K and V
    (SmolLM2 at 4k positions: 0.34 ms a layer, 10 ms a generated token on our CPU). This layer
    keeps K and V in buffers with spare positions and hands out views of the filled part; `crop`
    (the per-question rewind) shortens the views and the next update writes over what was cut.
    A layer whose tensors were replaced by anything else (reordering, offloading) starts a new
    buffer from them.
    """
    from transformers.cache_utils import DynamicLayer

    class AppendingLayer(DynamicLayer):
        key_buffer: torch.Tensor | None = None
        value_buffer: torch.Tensor | None = None

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            keys, values = self.keys, self.values
            assert keys is not None and values is not None  # set by lazy_initialization
            stop = self.get_seq_length() + key_states.shape[-2]
            self.key_buffer, self.keys = _appended(self.key_buffer, keys, stop, key_states)
            self.value_buffer, self.values = _appended(
                self.value_buffer, values, stop, value_states
            )
            return self.keys, self.values

        def reset(self) -> None:
            self.key_buffer = self.value_buffer = None
            super().reset()

    return AppendingLayer


def _appended(
    buffer: torch.Tensor | None, held: torch.Tensor, stop: int, new: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(buffer, view of its positions [0, stop)) holding `held` followed by `new` along dim -2:
    written into `buffer` when `held` is a view of its first positions and it has room, else
    into a new buffer with `SPARE_POSITIONS` to spare."""
    start = stop - new.shape[-2]
    in_place = (
        buffer is not None
        and held.data_ptr() == buffer.data_ptr()
        and held.stride() == buffer.stride()
        and buffer.shape[:2] == new.shape[:2]
        and buffer.shape[-1] == new.shape[-1]
        and buffer.dtype == new.dtype
        and buffer.device == new.device
        and buffer.shape[-2] >= stop
    )
    if buffer is None or not in_place:
        capacity = stop + SPARE_POSITIONS + stop // 64
        fresh = new.new_empty((*new.shape[:2], capacity, new.shape[-1]))
        if start:
            fresh[..., :start, :] = held[..., :start, :]
        buffer = fresh
    buffer[..., start:stop, :] = new
    return buffer, buffer[..., :stop, :]


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
