"""Sparse-attention configs: the validated, serialisable description of a method
(docs/methods.md §2).

`None` in place of a config means dense attention everywhere. `ResearchAttentionConfig` is an
ordered list of masker configs (a pydantic union discriminated by `type`), so
`ResearchAttentionConfig.model_validate({"masker_configs": [{"type": "sink", "sink_size": 4}]})`
builds one from plain data.

Serialisation: `config_to_dict` (a plain JSON-able dict, `None` for dense) and `config_to_yaml`;
the way back, which also takes preset names, is `presets.config_from_dict` / `config_from_yaml`.
`fingerprint()` is the SHA-256 of the canonical JSON plus the SHA-256 of every file a masker
references.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sparse_attention_hub.hashing import file_sha256, json_sha256
from sparse_attention_hub.sparse_attention.budget import NonNegativeInt
from sparse_attention_hub.sparse_attention.maskers import MASKERS, MaskerConfig


def _masker_union() -> Any:
    """The config union, discriminated by `type`, of every masker in the registry."""
    classes = tuple(MASKERS.get(name) for name in MASKERS.names())
    return Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007 - built at run time


if TYPE_CHECKING:
    AnyMaskerConfig = MaskerConfig
else:
    AnyMaskerConfig = _masker_union()
"""Every registered masker config, keyed by its `type` literal (the `MASKERS` registry key):
importing `maskers` registers them all, so a new masker file is accepted in configs and YAML."""


class SparseAttentionConfig(BaseModel):
    """Abstract base of sparse-attention configs; `None` in its place means dense attention."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def fingerprint(self) -> str:
        raise NotImplementedError

    def default_name(self) -> str:
        raise NotImplementedError


class ResearchAttentionConfig(SparseAttentionConfig):
    """Maskers applied in list order (union), layers computed densely, and the base seed.

    At most one sampling masker, and it must be the last. An empty list means dense, through the
    sparse pipeline (density 1 is logged).
    """

    masker_configs: tuple[AnyMaskerConfig, ...] = ()
    dense_layers: tuple[NonNegativeInt, ...] = ()
    seed: NonNegativeInt = 0

    def __init__(self, masker_configs: Any = (), **data: Any) -> None:
        super().__init__(**{"masker_configs": masker_configs, **data})

    @field_validator("masker_configs")
    @classmethod
    def _sampling_last(cls, maskers: tuple[Any, ...]) -> tuple[Any, ...]:
        sampling = [i for i, masker in enumerate(maskers) if masker.kind == "sampling"]
        if len(sampling) > 1:
            names = [maskers[i].type for i in sampling]
            raise ValueError(f"at most one sampling masker is allowed, got {names}")
        if sampling and sampling[0] != len(maskers) - 1:
            raise ValueError(
                f"the sampling masker {maskers[sampling[0]].type!r} must be the last masker, "
                f"it is at position {sampling[0]} of {len(maskers)}"
            )
        return maskers

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON, with the SHA-256 of every referenced file."""
        payload: dict[str, Any] = {"config": config_to_dict(self)}
        files = [path for masker in self.masker_configs for path in masker.referenced_files()]
        if files:
            payload["files"] = {path: file_sha256(path) for path in files}
        return json_sha256(payload)

    def default_name(self) -> str:
        """Short readable name such as `sink4_local64_topk0.1` (not unique: see fingerprint)."""
        parts = [masker.short_name() for masker in self.masker_configs] or ["full"]
        if self.dense_layers:
            parts.append("dense" + "-".join(str(layer) for layer in self.dense_layers))
        if self.seed:
            parts.append(f"seed{self.seed}")
        return "_".join(parts)


def config_fingerprint(config: ResearchAttentionConfig | None) -> str:
    """A config's fingerprint; `dense` for `None` (dense attention), as job records hold it."""
    return "dense" if config is None else config.fingerprint()


def config_name(config: ResearchAttentionConfig | None) -> str:
    """`dense` for `None`, else the config's default name."""
    return "dense" if config is None else config.default_name()


def config_to_dict(config: ResearchAttentionConfig | None) -> dict[str, Any] | None:
    """Plain JSON-able dict (lists, not tuples); `None` for dense."""
    if config is None:
        return None
    return config.model_dump(mode="json")


def config_to_yaml(config: ResearchAttentionConfig | None) -> str:
    """YAML text of `config_to_dict` (`null` for dense)."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
