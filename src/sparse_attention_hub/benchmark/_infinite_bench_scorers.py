"""InfiniteBench's per-sample scorers (official `compute_scores.py`, docs/benchmarks.md §3).

Each takes the raw prediction and the label in the type `infinite_bench.normalise_label` gives
it, and returns whether the sample is correct. The official rules are reproduced as they are
(they define the published numbers); `lenient_*` add the looser variant we report alongside.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sparse_attention_hub.benchmark.scorers import qa_f1

_NON_DIGIT = re.compile(r"[^0-9]")
_FIRST_NUMBER = re.compile(r"\d+\.\d+|\d+")
_WORD_SEPARATORS = ("\n", ":", '"', "'", ".", ",", "?", "!", "{", "}")
_CHOICE_SEPARATORS = ("\n", '"', "'", ".", ",", "?", "!", "{", "}")


def _blank_out(text: str, chars: tuple[str, ...]) -> str:
    for char in chars:
        text = text.replace(char, " ")
    return text


def _collapse_spaces(text: str) -> str:
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def first_int(prediction: str) -> str:
    """The first run of digits in the prediction, or "" when there is none."""
    return next((piece for piece in _NON_DIGIT.split(prediction) if piece), "")


def digits_match(prediction: str, label: list[str]) -> bool:
    """`passkey`, `number_string`: the first integer equals the label string."""
    return label[0] == first_int(prediction)


def kv_retrieval(prediction: str, label: list[str]) -> bool:
    """The value (a UUID) is one of the prediction's words after punctuation becomes space."""
    return label[0] in _blank_out(prediction, _WORD_SEPARATORS).split()


def code_run(prediction: str, label: int) -> bool:
    """The last word of the prediction, read as an integer, equals the return value."""
    words = _blank_out(prediction.strip(), ("\n", ".", "`", "'", '"', ":")).split()
    if not words:
        return False
    try:
        return int(words[-1]) == label
    except ValueError:
        return False


def _after_prefix(text: str, prefixes: tuple[str, ...]) -> str | None:
    """Text after the first listed prefix found (skipping one character); "" if nothing follows;
    None when no prefix occurs."""
    for prefix in prefixes:
        index = text.find(prefix)
        if index == -1:
            continue
        start = index + len(prefix) + 1
        return "" if len(text) < start else text[start:]
    return None


def code_debug(prediction: str, label: list[str]) -> bool:
    """Label `[function name, letter]`: "X." / "X:" first, else the text after an answer cue."""
    function_name, letter = label
    prediction = prediction.strip()
    if prediction[:2] in (f"{letter}.", f"{letter}:"):
        return True
    cleaned = prediction
    for token in ("\n", "`", "'", '"', "-", "*", "Option", "option"):
        cleaned = cleaned.replace(token, " ")
    cleaned = _collapse_spaces(cleaned)
    after = _after_prefix(cleaned, ("answer is:", "is:", "answer:", "correct option is:"))
    if not after:
        return False
    return after.startswith(letter) or after.startswith(function_name)


def math_find(prediction: str, label: int | float) -> bool:
    """The first number of the prediction equals the label (int or float comparison).

    Where the official code would raise on `int("2.5")` (a decimal answer to an integer label),
    the sample is wrong instead, so one odd answer cannot cost the whole task its score.
    """
    match = _FIRST_NUMBER.search(prediction)
    if match is None:
        return False
    text = match.group(0)
    if isinstance(label, int):
        return text.isdigit() and int(text) == label
    return float(text) == label


def longbook_choice(prediction: str, label: list[str]) -> bool:
    """Label `[option text, letter]`; the official cascade of answer forms."""
    prediction = prediction.strip()
    if not prediction:
        return False
    if prediction[0] in "ABCD":
        return prediction[0] in label
    if prediction in label:
        return True
    cleaned = _collapse_spaces(_blank_out(prediction, _CHOICE_SEPARATORS))
    after = _after_prefix(cleaned, ("answer is:", "answer:", "answer is", "option is"))
    if after is not None:
        return any(after.startswith(option) for option in label)
    for word in cleaned.split():
        if word in "ABCD":
            return word in label
    return False


def longdialogue(prediction: str, label: list[str]) -> bool:
    """The masked name (upper case) is one of the prediction's upper-cased words."""
    words = _blank_out(prediction.strip(), _WORD_SEPARATORS).split()
    return label[0] in [word.upper() for word in words]


def longbook_qa(prediction: str, label: list[str]) -> float:
    """Token F1 against the best-matching reference answer."""
    return max((qa_f1(prediction, reference) for reference in label), default=0.0)


def _last_letter(prediction: str, letters: str) -> str | None:
    found = re.findall(rf"\b[{letters}]\b", prediction)
    return found[-1] if found else None


def lenient_code_debug(prediction: str, label: list[str]) -> bool:
    """Official rule, or the last standalone letter A-J is the label letter."""
    return code_debug(prediction, label) or _last_letter(prediction, "A-J") == label[1]


def lenient_longbook_choice(prediction: str, label: list[str]) -> bool:
    """Official rule, or the last standalone letter A-D is the label letter."""
    return longbook_choice(prediction, label) or _last_letter(prediction, "A-D") == label[1]


def lenient_longdialogue(prediction: str, label: list[str]) -> bool:
    """Official rule, or any reference name occurs in the upper-cased prediction."""
    upper = prediction.upper()
    return longdialogue(prediction, label) or any(name.upper() in upper for name in label)


SCORERS: dict[str, Callable[[str, Any], float]] = {
    "passkey": digits_match,
    "number_string": digits_match,
    "kv_retrieval": kv_retrieval,
    "code_run": code_run,
    "code_debug": code_debug,
    "math_find": math_find,
    "longbook_qa_eng": longbook_qa,
    "longdialogue_qa_eng": longdialogue,
    "longbook_choice_eng": longbook_choice,
}
LENIENT: dict[str, Callable[[str, Any], bool]] = {
    "code_debug": lenient_code_debug,
    "longbook_choice_eng": lenient_longbook_choice,
    "longdialogue_qa_eng": lenient_longdialogue,
}
