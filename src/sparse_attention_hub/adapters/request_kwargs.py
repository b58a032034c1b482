"""Request kwargs: what a run may say about its requests, defined and checked here only.

`max_requests` caps the questions a benchmark asks per subset (whole requests, in order);
`max_context_length` makes the adapter truncate a context to that many tokens. Both are an
int >= 1 or None (no limit). The spec, `Benchmark.run_benchmark` and the adapter each take them
from users directly, so each calls `check_request_kwargs` (the spec lists the problems at their
key paths with `request_kwarg_problems`).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from sparse_attention_hub.errors import ConfigError

REQUEST_KWARGS = ("max_requests", "max_context_length")


def request_kwarg_problems(kwargs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, what is wrong) for every unknown key and every value that is not an int >= 1 or
    None; [] when the kwargs are fine."""
    problems = [
        (str(key), f"unknown key; allowed: {', '.join(REQUEST_KWARGS)}")
        for key in kwargs
        if key not in REQUEST_KWARGS
    ]
    for key, value in kwargs.items():
        if key in REQUEST_KWARGS and value is not None and not _positive_int(value):
            problems.append((key, f"must be an int >= 1 or null, got {value!r}"))
    return problems


def check_request_kwargs(kwargs: Mapping[str, Any]) -> dict[str, int | None]:
    """Every request kwarg's value (None where not given); a ConfigError lists what is wrong."""
    problems = request_kwarg_problems(kwargs)
    if problems:
        raise ConfigError(
            "; ".join(f"request_kwargs.{key}: {message}" for key, message in problems)
        )
    return {key: None if kwargs.get(key) is None else int(kwargs[key]) for key in REQUEST_KWARGS}


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1
