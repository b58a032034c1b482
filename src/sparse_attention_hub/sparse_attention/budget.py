"""Validated number types for masker configs (docs/methods.md §3): budgets, counts, open-interval
floats.

A *budget* is an int (an absolute number of keys) or a float in (0, 1] (a fraction of the N keys
of the current call, recomputed at every call so it grows during decode). `bool` is rejected and
numpy scalars are converted to plain Python numbers, so a config dumps to clean JSON / YAML.
"""

from __future__ import annotations

import math
import numbers
from typing import Annotated, Any

from pydantic import BeforeValidator


def _plain_number(value: Any, what: str) -> int | float:
    """numpy / Python int or float -> int or float; bool and everything else rejected."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise ValueError(f"{what} must be a number, got bool {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise ValueError(f"{what} must be a number, got {type(value).__name__} {value!r}")


def _budget_validator(min_int: int, *, zero_int: bool, lo_open: bool, hi_open: bool) -> Any:
    """Check an int (>= min_int, or exactly 0 when `zero_int`) or a float fraction in the interval."""
    lo, hi = ("(" if lo_open else "["), (")" if hi_open else "]")
    allowed = f"an int >= {min_int}{' (or 0)' if zero_int else ''} or a float in {lo}0, 1{hi}"

    def check(value: Any) -> int | float:
        number = _plain_number(value, "budget")
        if isinstance(number, int):
            if number < min_int and not (zero_int and number == 0):
                raise ValueError(f"budget {number!r} is not allowed: use {allowed}")
            return number
        too_low = number <= 0 if lo_open else number < 0
        too_high = number >= 1 if hi_open else number > 1
        if not math.isfinite(number) or too_low or too_high:
            hint = (
                " (fractions are of the key count; write an int for a key count)"
                if number > 1
                else ""
            )
            raise ValueError(f"budget {number!r} is not allowed: use {allowed}{hint}")
        return number

    return BeforeValidator(check)


def _int_validator(minimum: int, maximum: int | None = None) -> Any:
    def check(value: Any) -> int:
        number = _plain_number(value, "value")
        if not isinstance(number, int):
            raise ValueError(f"expected an int, got {number!r}")
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise ValueError(f"{number!r} is not allowed: use an int >= {minimum}{upper}")
        return number

    return BeforeValidator(check)


def _float_validator(*, hi_open: bool) -> Any:
    allowed = "a float in (0, 1)" if hi_open else "a float in (0, 1]"

    def check(value: Any) -> float:
        number = float(_plain_number(value, "value"))
        if not (0.0 < number < 1.0 or (number == 1.0 and not hi_open)):
            raise ValueError(f"{number!r} is not allowed: use {allowed}")
        return number

    return BeforeValidator(check)


Budget = Annotated[int | float, _budget_validator(1, zero_int=False, lo_open=True, hi_open=False)]
"""Key budget: int >= 1 keys, or float fraction in (0, 1] of N."""

Offset = Annotated[int | float, _budget_validator(0, zero_int=False, lo_open=False, hi_open=False)]
"""Offset: int >= 0 keys, or float fraction in [0, 1] of N."""

BaseRate = Annotated[int | float, _budget_validator(2, zero_int=True, lo_open=True, hi_open=True)]
"""vAttention base sample: 0 (masker off), int >= 2, or float in (0, 1) of the residual."""

Fraction = Annotated[float, _float_validator(hi_open=False)]
"""A float in (0, 1] (top_p, sampling_rate)."""

UnitFloat = Annotated[float, _float_validator(hi_open=True)]
"""A float in the open interval (0, 1) (epsilon, delta)."""

PositiveInt = Annotated[int, _int_validator(1)]
NonNegativeInt = Annotated[int, _int_validator(0)]
Bits = Annotated[int, _int_validator(1, 16)]


def effective_size(budget: int | float, n_keys: int) -> int:
    """Keys a budget means for a call with `n_keys` keys: the int itself, or floor(f * N).

    A 1e-9 slack absorbs float rounding (0.29 * 100 = 28.999...), so an int budget and the equal
    fraction always agree.
    """
    if isinstance(budget, int):
        return budget
    return math.floor(budget * n_keys + 1e-9)
