"""Named configs for quick experiments (`get_preset`, `list_presets`), and the one function that
turns what a user wrote — null, `dense`, a preset name, a dict, YAML text — into a config
(`config_from_dict`, `config_from_yaml`).

Defaults are sized for small models and contexts of 1k-16k tokens (e.g. SmolLM2-135M: 30 layers,
9 query / 3 KV heads, head_dim 64): 4 sink tokens (StreamingLLM) plus a 64-token window, and
roughly 10% of the keys for the method's own selection, so presets are comparable at equal
budgets. `dense` is `None` (dense attention everywhere).

| preset | maskers |
|---|---|
| dense | None |
| streaming | sink 4 + local 0.1 (10% window) |
| oracle_topk | sink 4 + local 64 + oracle_topk 0.1 |
| oracle_topp | sink 4 + local 64 + oracle_topp 0.9 |
| quest | quest 0.1 (page 16), layers 0-1 dense (paper) |
| random_sampling | sink 4 + local 64 + random_sampling 0.1 |
| vattention | sink 4 + local 64 + oracle_topk 0.05 + adaptive_sampling (base 0.05, eps = delta = 0.05) |
| magicpig | sink 4 + local 64 + magicpig (K 10, L 150, mips, >= 1 table), layer 0 dense |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.registry import Registry
from sparse_attention_hub.sparse_attention import maskers
from sparse_attention_hub.sparse_attention.config import ResearchAttentionConfig

PresetFactory = Callable[[], ResearchAttentionConfig | None]
PRESETS: Registry[PresetFactory] = Registry("sparse attention preset")

_SINK = maskers.SinkMaskerConfig(sink_size=4)
_LOCAL = maskers.LocalMaskerConfig(window_size=64)


@PRESETS.register("dense")
def _dense() -> ResearchAttentionConfig | None:
    return None


@PRESETS.register("streaming")
def _streaming() -> ResearchAttentionConfig | None:
    return ResearchAttentionConfig([_SINK, maskers.LocalMaskerConfig(window_size=0.1)])


@PRESETS.register("oracle_topk")
def _oracle_topk() -> ResearchAttentionConfig | None:
    return ResearchAttentionConfig([_SINK, _LOCAL, maskers.OracleTopKConfig(heavy_size=0.1)])


@PRESETS.register("oracle_topp")
def _oracle_topp() -> ResearchAttentionConfig | None:
    return ResearchAttentionConfig([_SINK, _LOCAL, maskers.OracleTopPConfig(top_p=0.9)])


@PRESETS.register("quest")
def _quest() -> ResearchAttentionConfig | None:
    return ResearchAttentionConfig(
        [maskers.QuestTopKConfig(heavy_size=0.1, page_size=16)], dense_layers=[0, 1]
    )


@PRESETS.register("random_sampling")
def _random_sampling() -> ResearchAttentionConfig | None:
    return ResearchAttentionConfig([_SINK, _LOCAL, maskers.RandomSamplingConfig(sampling_rate=0.1)])


@PRESETS.register("vattention")
def _vattention() -> ResearchAttentionConfig | None:
    sampling = maskers.AdaptiveSamplingConfig(
        base_rate_sampling=0.05, epsilon=0.05, delta=0.05, init_offset=4, local_offset=64
    )
    return ResearchAttentionConfig(
        [_SINK, _LOCAL, maskers.OracleTopKConfig(heavy_size=0.05), sampling]
    )


@PRESETS.register("magicpig")
def _magicpig() -> ResearchAttentionConfig | None:
    lsh = maskers.MagicPigConfig(lsh_l=150, lsh_k=10)
    return ResearchAttentionConfig([_SINK, _LOCAL, lsh], dense_layers=[0])


def get_preset(name: str) -> ResearchAttentionConfig | None:
    """The preset's config (`None` for dense); an unknown name lists the presets."""
    return PRESETS.get(name)()


def list_presets() -> list[str]:
    """Names of all presets, sorted."""
    return PRESETS.names()


def config_from_dict(
    data: Mapping[str, Any] | str | ResearchAttentionConfig | None,
) -> ResearchAttentionConfig | None:
    """What a user wrote -> a config: `None` / `"dense"` -> None (dense), another str -> that
    preset, a dict -> parsed (`{masker_configs: [...]}`), a config -> itself."""
    if data is None:
        return None
    if isinstance(data, str):
        return get_preset(data)
    if isinstance(data, ResearchAttentionConfig):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(
            "expected a preset name, null (dense), a dict {masker_configs: [...]} or a "
            f"ResearchAttentionConfig, got {type(data).__name__}"
        )
    return ResearchAttentionConfig.model_validate(dict(data))


def config_from_yaml(text: str) -> ResearchAttentionConfig | None:
    """Inverse of `config_to_yaml` (also accepts a preset name or `dense`)."""
    return config_from_dict(yaml.safe_load(text))
