"""The project's small exception hierarchy: one place to catch what users can fix."""

from __future__ import annotations


class SparseAttentionHubError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(SparseAttentionHubError, ValueError):
    """A configuration value is invalid; the message names the value and what is allowed."""


class UnknownNameError(ConfigError, KeyError):
    """A name (benchmark, subset, masker, backend, model alias) is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(SparseAttentionHubError, RuntimeError):
    """A model or tokenizer could not be loaded from its source."""


class DatasetLoadError(SparseAttentionHubError, RuntimeError):
    """A benchmark subset could not be loaded."""
