"""One module per masker; importing this package registers all of them in `MASKERS`.

Adding a masker takes one new file and one import line:
1. `maskers/<type>.py`: a frozen config class (subclass `MaskerConfig`) with `type: Literal["<type>"]`,
   registered with `@MASKERS.register("<type>")`, implementing `add_mask`, `short_name` and the
   `example` classmethod (plus `full_budget_example` when a setting keeps every key);
2. its import line below (and its name in `__all__`, and in the package's public re-exports).
The config union and YAML accept it from then on (`config.AnyMaskerConfig` is built from `MASKERS`),
and the generic tests in tests/sparse_attention walk it.
"""

from sparse_attention_hub.sparse_attention.maskers.adaptive_sampling import AdaptiveSamplingConfig
from sparse_attention_hub.sparse_attention.maskers.base import MASKERS, MaskerConfig, MaskInputs
from sparse_attention_hub.sparse_attention.maskers.double_sparsity import DoubleSparsityTopKConfig
from sparse_attention_hub.sparse_attention.maskers.hashattention import HashAttentionTopKConfig
from sparse_attention_hub.sparse_attention.maskers.local import LocalMaskerConfig
from sparse_attention_hub.sparse_attention.maskers.magicpig import MagicPigConfig
from sparse_attention_hub.sparse_attention.maskers.oracle_topk import OracleTopKConfig
from sparse_attention_hub.sparse_attention.maskers.oracle_topp import OracleTopPConfig
from sparse_attention_hub.sparse_attention.maskers.quest import QuestTopKConfig
from sparse_attention_hub.sparse_attention.maskers.random_sampling import RandomSamplingConfig
from sparse_attention_hub.sparse_attention.maskers.sink import SinkMaskerConfig

__all__ = [
    "MASKERS",
    "AdaptiveSamplingConfig",
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
    "SinkMaskerConfig",
]
