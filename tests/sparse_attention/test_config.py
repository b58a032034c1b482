"""Config validation, serialisation, fingerprints, names and presets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from sparse_attention_hub.errors import UnknownNameError
from sparse_attention_hub.sparse_attention import (
    MASKERS,
    AdaptiveSamplingConfig,
    HashAttentionTopKConfig,
    LocalMaskerConfig,
    MagicPigConfig,
    OracleTopKConfig,
    RandomSamplingConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    config_fingerprint,
    config_from_dict,
    config_from_yaml,
    config_name,
    config_to_dict,
    config_to_yaml,
    get_preset,
    list_presets,
)
from sparse_attention_hub.sparse_attention.maskers.hashattention import (
    write_random_weights as write_hat_weights,
)

from .helpers import EXAMPLES, HAT_KW, Shape

SHAPE = Shape(batch=1, kv_heads=1, groups=2, q_len=2, k_len=16, dim=8)


def test_registry_key_is_type_literal_and_module_stem() -> None:
    assert set(MASKERS.names()) == set(EXAMPLES)
    for name in MASKERS.names():
        cls = MASKERS.get(name)
        assert cls.model_fields["type"].default == name
        assert cls.__module__.rsplit(".", 1)[-1] == name


@pytest.mark.parametrize("name", MASKERS.names())
def test_every_masker_round_trips_dict_and_yaml(name: str, tmp_path: Path) -> None:
    typical, _ = EXAMPLES[name]
    config = ResearchAttentionConfig([typical(SHAPE, tmp_path)], dense_layers=[1], seed=3)
    data = config_to_dict(config)
    assert data is not None and data["masker_configs"][0]["type"] == name
    loaded = config_from_dict(data)
    assert loaded == config and loaded is not None
    assert config_from_yaml(config_to_yaml(config)) == config
    assert loaded.fingerprint() == config.fingerprint()


def test_model_validate_from_plain_data() -> None:
    config = ResearchAttentionConfig.model_validate(
        {
            "masker_configs": [
                {"type": "sink", "sink_size": 4},
                {"type": "local", "window_size": 0.1},
            ]
        }
    )
    assert config.masker_configs == (
        SinkMaskerConfig(sink_size=4),
        LocalMaskerConfig(window_size=0.1),
    )
    assert config.default_name() == "sink4_local0.1"


def test_dense_and_preset_strings() -> None:
    assert config_from_dict(None) is None
    assert config_from_dict("dense") is None
    assert config_to_dict(None) is None
    assert config_from_yaml(config_to_yaml(None)) is None
    assert config_from_dict("streaming") == get_preset("streaming")
    assert config_name(None) == "dense"
    assert config_fingerprint(None) != config_fingerprint(ResearchAttentionConfig([]))


@pytest.mark.parametrize("name", list_presets())
def test_presets_round_trip(name: str) -> None:
    config = get_preset(name)
    assert config_from_yaml(config_to_yaml(config)) == config


def test_required_presets_and_unknown_preset_lists_them() -> None:
    required = {"dense", "streaming", "oracle_topk", "oracle_topp", "quest"}
    required |= {"random_sampling", "vattention", "magicpig"}
    assert required <= set(list_presets())
    assert get_preset("dense") is None
    vattention = get_preset("vattention")
    assert vattention is not None
    assert [m.type for m in vattention.masker_configs][-1] == "adaptive_sampling"
    with pytest.raises(UnknownNameError, match="streaming") as info:
        get_preset("streamin")
    assert "Did you mean 'streaming'" in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(4, 4), (np.int64(7), 7), (0.25, 0.25), (1.0, 1.0), (np.float32(0.5), 0.5)],
)
def test_budget_accepts(value: object, expected: float) -> None:
    config = OracleTopKConfig(heavy_size=value)
    assert config.heavy_size == expected
    assert type(config.heavy_size) is type(expected)


@pytest.mark.parametrize("value", [True, False, 0, -3, 128.0, 1.5, 0.0, -0.1, float("nan"), "4"])
def test_budget_rejects_naming_the_value(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        OracleTopKConfig(heavy_size=value)
    assert "heavy_size" in str(info.value)
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_float_above_one_is_not_a_multiple_of_n() -> None:
    with pytest.raises(ValidationError, match=r"128\.0 is not allowed"):
        SinkMaskerConfig(sink_size=128.0)


def test_offsets_and_base_rate() -> None:
    config = AdaptiveSamplingConfig(
        base_rate_sampling=0, epsilon=0.1, delta=0.1, init_offset=0, local_offset=0.0
    )
    assert config.base_rate_sampling == 0
    with pytest.raises(ValidationError) as info:
        AdaptiveSamplingConfig(base_rate_sampling=1, epsilon=1.0, delta=0.0, init_offset=-1)
    text = str(info.value)
    for field in ("base_rate_sampling", "epsilon", "delta", "init_offset"):
        assert field in text  # every problem reported at once


def test_all_problems_in_a_list_reported_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        ResearchAttentionConfig.model_validate(
            {
                "masker_configs": [
                    {"type": "sink", "sink_size": 2.5},
                    {"type": "local", "window_size": True},
                    {"type": "nope"},
                ],
                "dense_layers": [-1],
            }
        )
    text = str(info.value)
    assert "2.5" in text and "bool" in text and "'nope'" in text and "dense_layers" in text
    assert info.value.error_count() == 4


def test_sampling_masker_must_be_last_and_unique() -> None:
    sampler = RandomSamplingConfig(sampling_rate=0.1)
    with pytest.raises(ValidationError, match="must be the last masker"):
        ResearchAttentionConfig([sampler, SinkMaskerConfig(sink_size=1)])
    with pytest.raises(ValidationError, match="at most one sampling masker"):
        ResearchAttentionConfig([sampler, MagicPigConfig(lsh_l=2, lsh_k=2)])
    ResearchAttentionConfig([SinkMaskerConfig(sink_size=1), sampler])


def test_unknown_fields_rejected_and_configs_frozen() -> None:
    with pytest.raises(ValidationError, match="extra"):
        SinkMaskerConfig.model_validate({"sink_size": 4, "size": 3})
    config = SinkMaskerConfig(sink_size=4)
    with pytest.raises(ValidationError):
        config.sink_size = 5  # type: ignore[misc]


def test_magicpig_packing_needs_k_at_most_63() -> None:
    with pytest.raises(ValidationError, match="lsh_k <= 63"):
        MagicPigConfig(lsh_l=2, lsh_k=64)
    assert MagicPigConfig(lsh_l=2, lsh_k=64, packing="none").lsh_k == 64


def test_hat_file_must_be_safetensors() -> None:
    with pytest.raises(ValidationError, match=r"\.safetensors"):
        HashAttentionTopKConfig(heavy_size=4, hat_weight_file="w.pt", **HAT_KW)


def test_fingerprint_is_stable_across_processes() -> None:
    config = get_preset("vattention")
    assert config is not None
    code = (
        "from sparse_attention_hub.sparse_attention import get_preset;"
        "print(get_preset('vattention').fingerprint())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == config.fingerprint()
    assert len(config.fingerprint()) == 64


def test_fingerprint_changes_with_values_and_file_content(tmp_path: Path) -> None:
    a = ResearchAttentionConfig([SinkMaskerConfig(sink_size=4)])
    assert a.fingerprint() == ResearchAttentionConfig([SinkMaskerConfig(sink_size=4)]).fingerprint()
    assert a.fingerprint() != ResearchAttentionConfig([SinkMaskerConfig(sink_size=5)]).fingerprint()
    assert (
        a.fingerprint()
        != ResearchAttentionConfig([SinkMaskerConfig(sink_size=4)], seed=1).fingerprint()
    )
    path = write_hat_weights(tmp_path, heads=2, dim=8)
    hat = ResearchAttentionConfig(
        [HashAttentionTopKConfig(heavy_size=4, hat_weight_file=path, **HAT_KW)]
    )
    before = hat.fingerprint()
    Path(path).write_bytes(Path(path).read_bytes() + b" ")
    assert hat.fingerprint() != before


def test_default_names() -> None:
    config = get_preset("oracle_topk")
    assert config is not None and config.default_name() == "sink4_local64_topk0.1"
    assert ResearchAttentionConfig([]).default_name() == "full"
    quest = get_preset("quest")
    assert quest is not None and quest.default_name() == "quest0.1p16_dense0-1"
