"""Final-answer extraction and exact numeric reading for competition math (AIME).

Where the answer is taken from follows Qwen2.5-Math's `extract_answer`, the de facto reference of
math evaluations (docs/benchmarks.md §7): a Minerva "final answer is $X$. I hope" sentence,
else the last box, else the text after the last "answer is", else after the Chinese cue 答案是,
else the last number of the text. The chosen text then counts only if it is a plain number:
an integer, a decimal or a fraction of the two, with thousands separators, `\\text{}`-style
wrappers, `$`, a unit in `\\text{}` or a degree sign around it. Its value is exact (a Fraction),
so `468.0`, `0468`, `\\dfrac{601}{1}` and `1{,}024` are the integers 468, 468, 601 and 1024,
while a box holding an expression (`2^3`, `\\sqrt{4}`, `x`) is no number at all.
"""

from __future__ import annotations

import re
from fractions import Fraction

_BOX = re.compile(r"\\(?:boxed|fbox)")
_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox|displaystyle)\s*\{([^{}]*)\}")
_TRAILING_TEXT = re.compile(r"\\(?:text|mbox)\s*\{[^{}]*\}\s*$")  # a unit after the number
_DEGREE = re.compile(r"\^\s*\{?\\circ\}?")
_VARIABLE_PREFIX = re.compile(r"^[A-Za-z]{1,2}\s*=(?!=)")  # "n = 468", as Qwen's `x=` rule
_DECIMAL = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[+-]?\.\d+")
_FRACTION = re.compile(r"([+-]?)\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")
_SLASH = re.compile(r"([^/]+)/([^/]+)")
_LAST_NUMBER = re.compile(r"-?\d*\.?\d+")  # Qwen's fallback pattern
_LEADING_NUMBER = re.compile(  # not followed by an operator: "10^3" is no leading number
    r"[+-]?(?:\d{1,3}(?:(?:\{,\}|,)\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?"
    r"(?!\d|,\d|\{,\}|\.\d|\s*(?:[\^×·+\-/]|\\(?:times|cdot|frac|sqrt)))"
)
_PHRASES = ("he answer is", "final answer is")
_CHINESE_CUE = "答案是"
_MINERVA = ("final answer is $", "$. I hope")


def last_box(text: str) -> str | None:
    """Content of the last `\\boxed` / `\\fbox`, braces matched by depth; None if there is none.

    `\\boxed 5$` (no brace) gives the text up to the next `$`; a box left open (the generation
    was cut off) gives everything after its brace, as Qwen's `extract_answer` does.
    """
    starts = list(_BOX.finditer(text))
    if not starts:
        return None
    rest = text[starts[-1].end() :]
    if not rest.startswith("{"):
        return rest.split("$")[0].strip()
    depth = 0
    for pos, char in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return rest[1:pos]
    return rest[1:]


def answer_text(text: str) -> tuple[str | None, str]:
    """The text that holds the final answer, and the rule that chose it (`minerva`, `boxed`,
    `answer_phrase`, `chinese_cue`, `last_number`, or `none` with None)."""
    head, tail = _MINERVA
    if head in text and tail in text.split(head, 1)[1]:
        return text.split(head, 1)[1].split(tail, 1)[0], "minerva"
    boxed = last_box(text)
    if boxed is not None:
        return boxed, "boxed"
    for phrase in _PHRASES:
        if phrase in text:
            return leading_number_text(text.rsplit(phrase, 1)[1]), "answer_phrase"
    if _CHINESE_CUE in text:
        after = text.split(_CHINESE_CUE, 1)[1].strip().split("\n\n")[0]
        return leading_number_text(after), "chinese_cue"
    numbers = _LAST_NUMBER.findall(text.replace(",", ""))
    if numbers:
        return numbers[-1], "last_number"
    return None, "none"


def leading_number_text(text: str) -> str:
    """The number an answer sentence starts with (`": $33$, since ..."` -> `"33"`), else the
    sentence's first line; markup such as `$`, `**` and `\\(` before the number is skipped."""
    line = text.strip().split("\n")[0]
    body = re.sub(r"^[\s:：*$]*(?:\\\(|\\\[)?[\s$]*(?:[A-Za-z]{1,2}\s*=\s*)?", "", line)
    frac = re.match(r"[+-]?\\[dt]?frac\{[^{}]+\}\{[^{}]+\}", body)
    if frac:
        return frac.group(0)
    match = _LEADING_NUMBER.match(body)
    return match.group(0) if match else line


def clean_number_text(content: str) -> str:
    """Strip what may decorate a number: wrappers, `$`, `\\!`, `\\left`/`\\right`, a trailing
    unit in `\\text{}`, a degree sign or `%`, a `n =` prefix, spaces and a final `.`."""
    previous = None
    while previous != content:
        previous = content
        content = _TRAILING_TEXT.sub("", content).strip() or content
        content = _WRAPPER.sub(r"\1", content)
    for token in ("\\!", "\\,", "\\;", "\\ ", "~", "\\$", "$", "\\(", "\\)", "\\left", "\\right"):
        content = content.replace(token, "")
    content = _DEGREE.sub("", content).replace("\\%", "").replace("%", "")
    content = content.replace("{,}", ",").strip()
    content = _VARIABLE_PREFIX.sub("", content)
    content = "".join(content.split()).rstrip(".")
    while content.startswith("{") and content.endswith("}") and _balanced(content[1:-1]):
        content = content[1:-1]
    return content


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def plain_number(text: str) -> Fraction | None:
    """The exact value of a plain number (`"1,024"`, `"-3.50"`, `"\\frac{601}{1}"`, `"7/2"`),
    or None for anything else. Commas only separate thousands in groups of three."""
    whole = _DECIMAL.fullmatch(text)
    if whole:
        return Fraction(text.replace(",", ""))
    frac = _FRACTION.fullmatch(text) or _SLASH.fullmatch(text)
    if frac is None:
        return None
    sign, top, bottom = frac.groups() if len(frac.groups()) == 3 else ("", *frac.groups())
    numerator, denominator = plain_number(top), plain_number(bottom)
    if numerator is None or denominator is None or denominator == 0:
        return None
    value = numerator / denominator
    return -value if sign == "-" else value


def integer_value(text: str | None) -> int | None:
    """The integer a final-answer text stands for, or None if it is no number or not whole."""
    if text is None:
        return None
    value = plain_number(clean_number_text(text))
    if value is None or value.denominator != 1:
        return None
    return int(value)


def extract_integer_answer(text: str) -> tuple[int | None, str]:
    """The final integer of a worked solution and the rule that chose its text (`answer_text`).

    The value is None when the chosen text is not a plain number equal to an integer.
    """
    chosen, rule = answer_text(text)
    return integer_value(chosen), rule
