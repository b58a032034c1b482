"""Prompt split, BOS handling, middle truncation (docs/methods.md §7 steps 1-3; pitfalls 5, 6)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparse_attention_hub.adapters.prompting import (
    encode_context,
    encode_question,
    encode_request,
    middle_truncate,
    split_prompt,
)

WORDS = [
    "<unk>",
    "<s>",
    "</s>",
    "[user]",
    "[end]",
    "[assistant]",
    "the",
    "cat",
    "sat",
    "where",
    "Answer:",
    "?",
]
LLAMA_STYLE_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }} [end] {% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


def llama_style_tokenizer(chat_template: str | None) -> Any:
    """Word-level tokenizer that, like Llama's, adds `<s>` by default."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def test_chat_split_puts_question_in_user_turn_and_prefix_in_assistant_turn(
    chat_tokenizer: Any,
) -> None:
    context, question, prefix = "Paris is in France.", " Where is Paris?", "Answer:"
    context_text, (question_text,) = split_prompt(chat_tokenizer, context, [question], prefix)
    whole = chat_tokenizer.apply_chat_template(
        [{"role": "user", "content": context + question}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert context_text + question_text == whole + prefix
    assert context_text.endswith("<|im_start|>user\n" + context)
    assert question_text == question + "<|im_end|>\n<|im_start|>assistant\n" + prefix


def test_split_without_template_concatenates() -> None:
    tokenizer = llama_style_tokenizer(None)
    assert split_prompt(tokenizer, "ctx", ["q1", "q2"], " A:") == ("ctx", ["q1 A:", "q2 A:"])


def test_split_rejects_a_template_that_rewrites_the_message() -> None:
    tokenizer = llama_style_tokenizer("{{ messages[0].content | upper }}")
    with pytest.raises(ValueError, match="verbatim"):
        split_prompt(tokenizer, "the cat", ["where"], "")


@pytest.mark.parametrize("template", [LLAMA_STYLE_TEMPLATE, None])
def test_context_has_exactly_one_bos_and_questions_none(template: str | None) -> None:
    tokenizer = llama_style_tokenizer(template)
    encoded = encode_request(tokenizer, "the cat sat", ["where ?", "the ?"], "Answer:")
    assert encoded.context_ids.count(tokenizer.bos_token_id) == 1
    assert encoded.context_ids[0] == tokenizer.bos_token_id
    for ids in encoded.question_ids:
        assert tokenizer.bos_token_id not in ids


def test_template_bos_is_not_doubled() -> None:
    tokenizer = llama_style_tokenizer(LLAMA_STYLE_TEMPLATE)
    context_text, _ = split_prompt(tokenizer, "the cat", ["where"], "")
    assert context_text.startswith("<s>")
    assert encode_context(tokenizer, context_text)[:2] == [1, 3]  # <s> [user], not <s> <s>
    assert encode_context(tokenizer, "the cat") == [1, 6, 7]  # no BOS in text: tokenizer adds one


def test_smollm2_context_starts_with_one_bos(chat_tokenizer: Any) -> None:
    encoded = encode_request(chat_tokenizer, "Some context.", ["Question?"], "Answer:")
    bos = chat_tokenizer.bos_token_id
    assert encoded.context_ids[0] == bos and encoded.context_ids[1] != bos
    assert encoded.question_ids[0][0] != bos
    question = encode_question(chat_tokenizer, "Question?")
    assert encoded.question_ids[0][: len(question)] == question


@pytest.mark.parametrize(
    ("max_length", "expected"),
    [
        (4, [0, 1, 8, 9]),
        (5, [0, 1, 7, 8, 9]),
        (1, [9]),
        (10, list(range(10))),
        (None, list(range(10))),
    ],
)
def test_middle_truncate_examples(max_length: int | None, expected: list[int]) -> None:
    kept, removed = middle_truncate(list(range(10)), max_length)
    assert kept == expected
    assert removed == 10 - len(expected)


@given(n=st.integers(0, 60), max_length=st.integers(1, 80))
def test_middle_truncate_keeps_head_and_tail(n: int, max_length: int) -> None:
    ids = list(range(n))
    kept, removed = middle_truncate(ids, max_length)
    assert len(kept) == min(n, max_length) and removed == n - len(kept)
    if n > max_length:
        head = max_length // 2
        assert kept[:head] == ids[:head]
        assert kept[head:] == ids[n - (max_length - head) :]


def test_encode_request_truncates_context_only(chat_tokenizer: Any) -> None:
    context = " ".join(f"word{i}" for i in range(200))
    full = encode_request(chat_tokenizer, context, ["Which word?"], "Answer:")
    cut = encode_request(chat_tokenizer, context, ["Which word?"], "Answer:", max_context_length=40)
    assert len(cut.context_ids) == 40
    assert cut.truncated_tokens == len(full.context_ids) - 40
    assert cut.context_ids == full.context_ids[:20] + full.context_ids[-20:]
    assert cut.question_ids == full.question_ids


def test_separator_avoids_a_colliding_candidate(
    chat_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    first, second = "a" * 32, "b" * 32
    candidates = iter([uuid.UUID(hex=first), uuid.UUID(hex=second)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(candidates))
    context = f"a context that happens to contain {first}."
    context_text, (question_text,) = split_prompt(chat_tokenizer, context, ["Q?"], "A:")
    assert context_text.endswith(context) and question_text.startswith("Q?<|im_end|>")
    assert second not in context_text + question_text
