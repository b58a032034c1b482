"""Request -> token ids (docs/methods.md §7 steps 1-3): chat split, one BOS, middle truncation.

The context is rendered inside the user turn and cut at a random separator, so the context tokens
can be prefilled once while each question still lands in the user turn and the answer prefix
starts the assistant turn.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EncodedRequest:
    """Token ids of one request: the shared context and one list per question."""

    context_ids: list[int]
    question_ids: list[list[int]]
    truncated_tokens: int  # context tokens removed by middle truncation


def split_prompt(
    tokenizer: Any, context: str, questions: Sequence[str], answer_prefix: str
) -> tuple[str, list[str]]:
    """(context_text, question_texts) so that context_text + question_text is the full prompt.

    With a chat template: render `[{"role": "user", "content": context + SEP}]` with the generation
    prompt; the text before SEP is the context, the text after it (end of user turn + assistant
    header) follows each question, then the answer prefix. Without one: plain concatenation.
    """
    if not getattr(tokenizer, "chat_template", None):
        return context, [question + answer_prefix for question in questions]
    separator = _separator([context, answer_prefix, *questions])
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": context + separator}],
        tokenize=False,
        add_generation_prompt=True,
    )
    if not isinstance(rendered, str) or rendered.count(separator) != 1:
        raise ValueError(
            "the chat template did not render the user message verbatim; cannot split it"
        )
    context_text, suffix = rendered.split(separator)
    return context_text, [question + suffix + answer_prefix for question in questions]


def _separator(texts: Sequence[str]) -> str:
    """A random 32-hex-character string found in none of `texts`."""
    while True:
        candidate = uuid.uuid4().hex
        if not any(candidate in text for text in texts):
            return candidate


def encode_context(tokenizer: Any, context_text: str) -> list[int]:
    """Context ids with exactly one BOS: the tokenizer's own, unless the text already starts with it."""
    bos = getattr(tokenizer, "bos_token", None)
    has_bos = isinstance(bos, str) and bool(bos) and context_text.startswith(bos)
    return list(tokenizer(context_text, add_special_tokens=not has_bos)["input_ids"])


def encode_question(tokenizer: Any, question_text: str) -> list[int]:
    """Question ids without special tokens: no BOS in the middle of the sequence."""
    return list(tokenizer(question_text, add_special_tokens=False)["input_ids"])


def middle_truncate(ids: list[int], max_length: int | None) -> tuple[list[int], int]:
    """Keep the first ⌊M/2⌋ and last M - ⌊M/2⌋ ids when longer than M; return (ids, removed).

    Both ends survive: documents put their instructions at the start and the end.
    """
    if max_length is None or len(ids) <= max_length:
        return list(ids), 0
    head = max_length // 2
    tail = max_length - head
    kept = ids[:head] + (ids[len(ids) - tail :] if tail else [])
    return kept, len(ids) - max_length


def encode_request(
    tokenizer: Any,
    context: str,
    questions: Sequence[str],
    answer_prefix: str,
    max_context_length: int | None = None,
) -> EncodedRequest:
    """Split, tokenise and truncate one request (the question is never truncated)."""
    context_text, question_texts = split_prompt(tokenizer, context, questions, answer_prefix)
    context_ids, removed = middle_truncate(
        encode_context(tokenizer, context_text), max_context_length
    )
    return EncodedRequest(
        context_ids, [encode_question(tokenizer, text) for text in question_texts], removed
    )
