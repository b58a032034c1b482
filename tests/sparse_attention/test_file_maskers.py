"""HashAttention weights and Double Sparsity channel files: loading, validation, per-layer use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.sparse_attention import (
    DoubleSparsityTopKConfig,
    HashAttentionTopKConfig,
    ResearchAttentionConfig,
    SparseState,
    sparse_attention_forward,
)
from sparse_attention_hub.sparse_attention.maskers.double_sparsity import (
    write_random_channels as write_channels,
)
from sparse_attention_hub.sparse_attention.maskers.hashattention import (
    write_random_weights as write_hat_weights,
)

from .helpers import HAT_KW, Shape, empty_mask, inputs_for, qkv

SHAPE = Shape(batch=1, kv_heads=2, groups=2, q_len=2, k_len=20, dim=8)


def hat_config(path: str, **overrides: object) -> HashAttentionTopKConfig:
    return HashAttentionTopKConfig.model_validate(
        {"heavy_size": 4, "hat_weight_file": path, **HAT_KW, **overrides}
    )


def test_hat_shape_mismatch_names_the_tensor(tmp_path: Path) -> None:
    path = write_hat_weights(tmp_path, SHAPE.heads, SHAPE.dim)
    q, k, v = qkv(SHAPE)
    with pytest.raises(ConfigError, match=r"layers\.0\.query\.1\.weight.*hat_bits=32"):
        hat_config(path, hat_bits=32).add_mask(inputs_for(q, k, v), empty_mask(inputs_for(q, k, v)))
    tensors = load_file(path)
    del tensors["layers.1.key.0.bias"]
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken))
    inputs = inputs_for(q, k, v, layer_idx=1)
    with pytest.raises(ConfigError, match=r"layers\.1\.key\.0\.bias.*missing"):
        hat_config(str(broken)).add_mask(inputs, empty_mask(inputs))
    deeper = hat_config(path, hat_mlp_layers=1, hat_bits=8)  # the file has 2 MLP layers
    with pytest.raises(ConfigError, match=r"layers\.1\.query\.1\.weight.*hat_mlp_layers is 1"):
        deeper.add_mask(inputs, empty_mask(inputs))
    with pytest.raises(ConfigError, match="does not exist"):
        hat_config(str(tmp_path / "none.safetensors")).add_mask(inputs, empty_mask(inputs))


def test_hat_layers_use_their_own_weights(tmp_path: Path) -> None:
    path = write_hat_weights(tmp_path, SHAPE.heads, SHAPE.dim)
    q, k, v = qkv(SHAPE, 3)
    config = hat_config(path)
    masks = []
    for layer in (0, 1):
        inputs = inputs_for(q, k, v, layer_idx=layer)
        masks.append(config.add_mask(inputs, empty_mask(inputs)))
    assert not torch.equal(masks[0], masks[1])
    assert ((masks[0] > 0).sum(-1) == 4).all()


def test_hat_key_signatures_are_cached_per_weight_file(tmp_path: Path) -> None:
    # two HashAttention maskers in one config share the state, never each other's signatures
    first = hat_config(write_hat_weights(tmp_path, SHAPE.heads, SHAPE.dim), heavy_size=3)
    second_file = write_hat_weights(tmp_path, SHAPE.heads, SHAPE.dim, seed=2)
    second = hat_config(second_file, heavy_size=3)
    q, k, v = qkv(SHAPE, 3)
    shared = inputs_for(q, k, v)
    after_first = first.add_mask(shared, empty_mask(shared))
    both = second.add_mask(shared, after_first)
    alone = inputs_for(q, k, v)
    assert torch.equal(both, second.add_mask(alone, after_first))


def test_hat_weights_are_loaded_once_per_layer_whatever_the_budget(tmp_path: Path) -> None:
    path = write_hat_weights(tmp_path, SHAPE.heads, SHAPE.dim)
    device = torch.device("cpu")
    small, large = hat_config(path, heavy_size=2), hat_config(path, heavy_size=0.5)
    weights = small.layer_weights(0, SHAPE.dim, SHAPE.heads, device)
    assert large.layer_weights(0, SHAPE.dim, SHAPE.heads, device) is weights
    assert small.layer_weights(1, SHAPE.dim, SHAPE.heads, device) is not weights


def test_hat_runs_through_the_forward_with_gqa(tmp_path: Path) -> None:
    path = write_hat_weights(tmp_path, SHAPE.heads, SHAPE.dim)
    q, k, v = qkv(SHAPE, 3)
    config = ResearchAttentionConfig([hat_config(path)])
    out = sparse_attention_forward(
        q, k, v, None, SHAPE.dim**-0.5, layer_idx=1, config=config, state=SparseState()
    )
    assert out.shape == (1, 2, 4, 8) and torch.isfinite(out).all()


def test_double_sparsity_kv_head_lists_and_per_layer_channels(tmp_path: Path) -> None:
    q, k, v = qkv(SHAPE, 3)
    per_kv = write_channels(tmp_path, SHAPE.kv_heads, SHAPE.dim, layers=2, seed=1)
    config = DoubleSparsityTopKConfig(heavy_size=5, sorted_channel_file=per_kv, group_factor=4)
    table = json.loads(Path(per_kv).read_text())
    channels = config.channels(1, SHAPE.dim, SHAPE.heads, SHAPE.kv_heads)
    expected = [table["model.layers.1.self_attn.qk_proj"][h // 2][:2] for h in range(SHAPE.heads)]
    assert channels.tolist() == expected
    masks = []
    for layer in (0, 1):
        inputs = inputs_for(q, k, v, layer_idx=layer)
        masks.append(config.add_mask(inputs, empty_mask(inputs)))
        assert ((masks[-1] > 0).sum(-1) == 5).all()
    assert not torch.equal(masks[0], masks[1])


def test_double_sparsity_errors_name_the_problem(tmp_path: Path) -> None:
    q, k, v = qkv(SHAPE, 3)
    path = write_channels(tmp_path, SHAPE.heads, SHAPE.dim, layers=1)
    inputs = inputs_for(q, k, v, layer_idx=3)
    config = DoubleSparsityTopKConfig(heavy_size=5, sorted_channel_file=path, group_factor=4)
    with pytest.raises(ConfigError, match=r"model\.layers\.3\.self_attn\.qk_proj"):
        config.add_mask(inputs, empty_mask(inputs))
    inputs = inputs_for(q, k, v, layer_idx=0)
    odd = DoubleSparsityTopKConfig(heavy_size=5, sorted_channel_file=path, group_factor=3)
    with pytest.raises(ConfigError, match="group_factor 3"):
        odd.add_mask(inputs, empty_mask(inputs))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model.layers.0.self_attn.qk_proj": [[0, 1], [9, 9]]}))
    wrong = DoubleSparsityTopKConfig(heavy_size=5, sorted_channel_file=str(bad), group_factor=4)
    with pytest.raises(ConfigError, match="head 1"):
        wrong.add_mask(inputs, empty_mask(inputs))


def test_double_sparsity_label_bits_change_the_ranking_inputs(tmp_path: Path) -> None:
    q, k, v = qkv(Shape(1, 1, 1, 1, 64, 8), 5)
    path = write_channels(tmp_path, 1, 8, layers=1)
    masks = {}
    for bits in (1, 16):
        config = DoubleSparsityTopKConfig(
            heavy_size=6, sorted_channel_file=path, group_factor=2, label_bits=bits
        )
        inputs = inputs_for(q, k, v)
        masks[bits] = config.add_mask(inputs, empty_mask(inputs))
    assert not torch.equal(masks[1], masks[16])
