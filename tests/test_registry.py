"""The generic registry shared by maskers, benchmarks and backends."""

from __future__ import annotations

import pytest

from sparse_attention_hub.errors import ConfigError, UnknownNameError
from sparse_attention_hub.registry import Registry


def make_registry() -> Registry[int]:
    registry: Registry[int] = Registry("widget")
    registry.add("alpha", 1, "a")
    registry.register("beta")(2)
    return registry


def test_lookup_by_name_and_alias() -> None:
    registry = make_registry()
    assert registry.get("alpha") == 1
    assert registry.get("a") == 1
    assert registry.canonical("a") == "alpha"
    assert registry.names() == ["alpha", "beta"]
    assert "a" in registry and "gamma" not in registry
    assert len(registry) == 2


def test_duplicate_names_and_aliases_raise() -> None:
    registry = make_registry()
    with pytest.raises(ConfigError, match="'beta' is already registered"):
        registry.add("beta", 3)
    with pytest.raises(ConfigError, match="'a' is already registered"):
        registry.add("gamma", 3, "a")


def test_unknown_name_suggests_and_lists() -> None:
    registry = make_registry()
    with pytest.raises(UnknownNameError) as info:
        registry.get("alpah")
    message = str(info.value)
    assert "unknown widget 'alpah'" in message
    assert "Did you mean 'alpha'?" in message
    assert "Available: alpha, beta" in message
    assert isinstance(info.value, ValueError)
