"""Request kwargs: one list of what is allowed, one check every entry point calls."""

from __future__ import annotations

import pytest

from sparse_attention_hub.adapters.request_kwargs import (
    check_request_kwargs,
    request_kwarg_problems,
)
from sparse_attention_hub.errors import ConfigError


def test_every_problem_is_listed_at_its_key() -> None:
    problems = request_kwarg_problems(
        {"max_request": 2, "max_requests": 0, "max_context_length": True}
    )
    assert problems == [
        ("max_request", "unknown key; allowed: max_requests, max_context_length"),
        ("max_requests", "must be an int >= 1 or null, got 0"),
        ("max_context_length", "must be an int >= 1 or null, got True"),
    ]
    with pytest.raises(ConfigError, match=r"request_kwargs\.max_request: unknown key.*0"):
        check_request_kwargs({"max_request": 2, "max_requests": 0})


def test_values_default_to_no_limit() -> None:
    assert check_request_kwargs({}) == {"max_requests": None, "max_context_length": None}
    assert check_request_kwargs({"max_context_length": 100, "max_requests": None}) == {
        "max_requests": None,
        "max_context_length": 100,
    }
