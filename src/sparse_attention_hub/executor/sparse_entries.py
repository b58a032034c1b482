"""The sparse configs of an experiment: every form a user may write them in -> named entries.

`[(name, config|None)]` from Python, `{name: preset|null|dict}` or `[{name, config}]` from YAML,
a bare preset name naming itself; each config goes through `config_from_dict` (None / preset
name / dict / config object). Every bad entry is reported at once, at its key path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.problems import KeyProblems, key_path

SparseEntry = tuple[str, Any]


def resolve_sparse_configs(value: Any) -> list[SparseEntry]:
    """`[(name, config|None)]`, `{name: preset|None|dict}` or `[{name, config}]` -> entries.

    Every bad entry is reported in one error; names must be unique.
    """
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)):
        pairs = [_pair(item) for item in value]
    else:
        raise ValueError(
            f"must be a list of (name, config) pairs or a mapping {{name: config}}, got {value!r}"
        )
    from sparse_attention_hub.sparse_attention import config_from_dict

    problems: list[tuple[str, str]] = []
    entries: list[SparseEntry] = []
    for index, (name, raw) in enumerate(pairs):
        if not isinstance(name, str) or not name.strip():
            problems.append((f"[{index}]", f"a name must be a non-empty string, got {name!r}"))
            continue
        try:
            entries.append((name, config_from_dict(raw)))
        except ValidationError as exc:
            for error in exc.errors():
                sub = key_path((name, *error["loc"]))
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    fields = _sparse_fields(error["loc"][:-1])
                    message = f"unknown key; allowed: {', '.join(fields)}"
                problems.append((sub, message))
        except (ConfigError, ValueError, TypeError) as exc:
            problems.append((name, str(exc)))
    names = [name for name, _ in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(("", f"duplicate sparse config names {duplicates}"))
    if problems:
        raise KeyProblems(problems)
    return entries


def _sparse_fields(loc: tuple[Any, ...]) -> list[str]:
    """Fields of the config at `loc` inside a ResearchAttentionConfig (a masker, by its type)."""
    from sparse_attention_hub.sparse_attention import ResearchAttentionConfig
    from sparse_attention_hub.sparse_attention.maskers import MASKERS

    if not loc or loc[0] != "masker_configs" or len(loc) < 3:
        return list(ResearchAttentionConfig.model_fields)
    try:
        return list(MASKERS.get(str(loc[2])).model_fields)
    except ConfigError:
        return []


def _pair(item: Any) -> tuple[Any, Any]:
    if isinstance(item, Mapping) and set(item) <= {"name", "config"} and "name" in item:
        return item["name"], item.get("config")
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return item[0], item[1]
    if isinstance(item, str):  # a bare preset name names itself
        return item, item
    raise ValueError(
        f"sparse config entry must be (name, config) or {{name, config}}, got {item!r}"
    )
