"""One module per masker; importing this package registers all of them in `MASKERS`.

Adding a masker: a new file `maskers/<type>.py` with a config class registered under `<type>`,
an import line here, and the class in `config.AnyMaskerConfig`.
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
