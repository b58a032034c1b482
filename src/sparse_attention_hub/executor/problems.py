"""How problems are reported: one line each, at its key path, at most MAX_MESSAGES of them.

pydantic's errors become such lines here (`format_validation_error`), for the experiment spec
and for the config classes a Python user constructs (`config_errors`).
"""

from __future__ import annotations

import functools
import typing
from typing import Any, TypeVar

from pydantic import ValidationError

from sparse_attention_hub.errors import ConfigError

_C = TypeVar("_C")

MAX_MESSAGES = 20  # problems listed in one error; the rest are counted ("... and N more")


class KeyProblems(ValueError):
    """Problems found inside one field, each at its own sub-key (`max_new_tokens`, ...).

    `format_validation_error` prints them as `field.sub: message`, one line each.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))


def key_path(loc: tuple[Any, ...]) -> str:
    """('benchmarks', 0, 'name') -> 'benchmarks[0].name'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def bullet(problems: list[str], where: str = "found before starting") -> str:
    """`N problem(s) <where>:` then one `  - ...` line each, at most MAX_MESSAGES of them."""
    shown = [f"  - {p}" for p in problems[:MAX_MESSAGES]]
    if len(problems) > MAX_MESSAGES:
        shown.append(f"  ... and {len(problems) - MAX_MESSAGES:,} more")
    return f"{len(problems)} problem(s) {where}:\n" + "\n".join(shown)


def config_errors(cls: type[_C]) -> type[_C]:
    """Constructing `cls` in Python raises ConfigError, not pydantic's ValidationError."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, cls, cls.__name__)) from None

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


def format_validation_error(exc: ValidationError, model: Any, what: str) -> str:
    """One line per problem of validating `model` (`what` in the heading), `key.path[0].sub:
    message (allowed ...)`, at most MAX_MESSAGES."""
    problems: list[str] = []
    for error in exc.errors():
        loc = error["loc"]
        fields = allowed_keys(model, ())
        if loc and isinstance(loc[0], int) and loc[0] < len(fields):
            loc = (fields[loc[0]], *loc[1:])  # a positional argument of a config class
        where = key_path(loc)
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, KeyProblems):
            problems += [
                f"{where}{'.' if key[:1] not in ('', '[') else ''}{key}: {message}"
                for key, message in cause.problems
            ]
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            allowed = allowed_keys(model, loc[:-1])
            message = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        elif error["type"] not in ("missing", "value_error"):
            given = error.get("input")
            message += f", got {given!r}" if _short(given) else f", got a {type(given).__name__}"
        problems.append(f"{where or '(top level)'}: {message}")
    return bullet(problems, f"in {what}")


def allowed_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys a mapping at `loc` inside `model` may have (for "unknown key" messages): the
    fields of the pydantic model or dataclass that the field at `loc` holds, else []."""
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list field: the same model
        field = _fields(model).get(str(part))
        annotation = getattr(field, "annotation", None)
        inner = [annotation, *typing.get_args(annotation)]
        model = next((kind for kind in inner if isinstance(kind, type) and _fields(kind)), None)
        if model is None:
            return []
    return list(_fields(model))


def _fields(model: Any) -> dict[str, Any]:
    fields = getattr(model, "model_fields", None) or getattr(model, "__pydantic_fields__", None)
    return dict(fields or {})


def _short(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 80
