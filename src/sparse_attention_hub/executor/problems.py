"""How problems are reported: one line each, at its key path, at most MAX_MESSAGES of them."""

from __future__ import annotations

from typing import Any

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
