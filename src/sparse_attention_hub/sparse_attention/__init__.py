"""Sparse attention as a quality simulator: configs, maskers, masked attention, statistics.

Attention is computed in float32 over masks (docs/methods.md §4-§5), in query chunks whose extra
memory fits a budget (`DEFAULT_MEMORY_MIB`); this measures accuracy loss, not a kernel's speed.
What other layers use:

- configs: `SparseAttentionConfig`, `ResearchAttentionConfig(masker_configs, dense_layers, seed)`,
  one config class per masker (registry `MASKERS`, key == YAML `type` == file stem), and
  `config_to_dict` / `config_from_dict` / `config_to_yaml` / `config_from_yaml`,
  `config_fingerprint`, `config_name`; presets: `get_preset`, `list_presets`.
- per request: `SparseState` (seeds, call counters, per-layer caches, `crop`).
- per job: `AttentionStats` (`attention_stats.jsonl`, `summary()`).
- per attention call: `sparse_attention_forward(query, key, value, attention_mask, scaling, *,
  layer_idx, config, state, stats, memory_mib)` -> `(B, Q, H, D)`;
  `dense_attention`.

Tensor shapes in this package's docstrings: B batch, H query heads, H_kv key/value heads (GQA:
query head h reads KV head h // (H / H_kv)), Q queries of the call or chunk, N keys (the whole KV
cache), D head dim; other dimensions go by name (`pages`, `words`, `rows`).
"""

from sparse_attention_hub.sparse_attention.attention import (
    allowed_entries,
    attention_logits,
    dense_attention,
    gathered_attention,
    weighted_attention,
)
from sparse_attention_hub.sparse_attention.call import DEFAULT_MEMORY_MIB
from sparse_attention_hub.sparse_attention.config import (
    ResearchAttentionConfig,
    SparseAttentionConfig,
    config_fingerprint,
    config_name,
    config_to_dict,
    config_to_yaml,
)
from sparse_attention_hub.sparse_attention.forward import build_mask, sparse_attention_forward
from sparse_attention_hub.sparse_attention.maskers import (
    MASKERS,
    AdaptiveSamplingConfig,
    DoubleSparsityTopKConfig,
    HashAttentionTopKConfig,
    LocalMaskerConfig,
    MagicPigConfig,
    MaskerConfig,
    MaskInputs,
    OracleTopKConfig,
    OracleTopPConfig,
    QuestTopKConfig,
    RandomSamplingConfig,
    SinkMaskerConfig,
)
from sparse_attention_hub.sparse_attention.presets import (
    config_from_dict,
    config_from_yaml,
    get_preset,
    list_presets,
)
from sparse_attention_hub.sparse_attention.quantize import pseudo_quantize
from sparse_attention_hub.sparse_attention.state import SparseState
from sparse_attention_hub.sparse_attention.stats import STATS_FILENAME, AttentionStats

__all__ = [
    "DEFAULT_MEMORY_MIB",
    "MASKERS",
    "STATS_FILENAME",
    "AdaptiveSamplingConfig",
    "AttentionStats",
    "DoubleSparsityTopKConfig",
    "HashAttentionTopKConfig",
    "LocalMaskerConfig",
    "MagicPigConfig",
    "MaskInputs",
    "MaskerConfig",
    "OracleTopKConfig",
    "OracleTopPConfig",
    "QuestTopKConfig",
    "RandomSamplingConfig",
    "ResearchAttentionConfig",
    "SinkMaskerConfig",
    "SparseAttentionConfig",
    "SparseState",
    "allowed_entries",
    "attention_logits",
    "build_mask",
    "config_fingerprint",
    "config_from_dict",
    "config_from_yaml",
    "config_name",
    "config_to_dict",
    "config_to_yaml",
    "dense_attention",
    "gathered_attention",
    "get_preset",
    "list_presets",
    "pseudo_quantize",
    "sparse_attention_forward",
    "weighted_attention",
]
