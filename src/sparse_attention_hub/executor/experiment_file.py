"""Reading an experiment YAML file safely: UTF-8 only, no duplicate keys, bounded aliases.

A YAML alias shares a node, so a few hundred bytes of nested aliases can stand for billions of
values once anything walks them (validation, fingerprints). The file's node graph is measured
before anything is built from it, and refused past `MAX_EXPANDED_NODES`.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.spec import ExperimentSpec, spec_from_dict

MAX_EXPANDED_NODES = 100_000  # far above any real experiment (a few hundred nodes)
MAX_FILE_BYTES = 10 * 2**20


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key (a list or mapping)
            raise ConfigError(
                f"key at line {key_node.start_mark.line + 1} must be a plain value"
            ) from None
        if duplicate:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return dict(loader.construct_pairs(node))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def expanded_size(node: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """Nodes the document stands for with every alias expanded (stops counting past `limit`)."""
    sizes: dict[int, int] = {}

    def size(current: yaml.Node, depth: int) -> int:
        key = id(current)
        if key in sizes:
            return sizes[key]
        if depth > 200:
            raise ConfigError(
                f"nesting deeper than 200 levels at line {current.start_mark.line + 1}"
            )
        total = 1
        if isinstance(current, yaml.MappingNode):
            children = [n for pair in current.value for n in pair]
        elif isinstance(current, yaml.SequenceNode):
            children = list(current.value)
        else:
            children = []
        sizes[key] = limit + 1  # a node reached again while being measured: a cycle
        for child in children:
            total += size(child, depth + 1)
            if total > limit:
                break
        sizes[key] = min(total, limit + 1)
        return sizes[key]

    return size(node, 0)


def read_text(path: Path) -> str:
    """The file as text; a one-line ConfigError if it is not readable UTF-8 (or is huge)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read experiment file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB; an experiment file is a few KiB"
        )
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE)):
        raise ConfigError(f"{path}: is UTF-16/32 encoded; save it as UTF-8")
    try:
        return raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None


def load_yaml(text: str, path: str | Path) -> Any:
    """Parse one YAML document with duplicate keys refused and alias expansion bounded."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{path}: its aliases (*name) expand to more than {MAX_EXPANDED_NODES:,} values; "
                "write the values out instead"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read an experiment YAML file (see examples/quickstart.yaml)."""
    path = Path(path)
    data = load_yaml(read_text(path), path)
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: expected a mapping of keys (models, benchmarks, ...) at the top level, "
            f"got {type(data).__name__}"
        )
    return spec_from_dict(data)
