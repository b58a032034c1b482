"""An adapter that answers from a script instead of a model: instant, deterministic, no weights.

Used by tests and by executor dry runs to exercise everything around the model (grouping,
persistence, scoring, scheduling) without loading one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sparse_attention_hub.adapters.base import (
    AnswerCallback,
    ModelAdapter,
    Request,
    RequestResponse,
)

if TYPE_CHECKING:
    from sparse_attention_hub.sparse_attention import ResearchAttentionConfig

AnswerFn = Callable[[str, str], str]


class ScriptedAdapter(ModelAdapter):
    """Answers `answers[question]` (or `answer_fn(context, question)`, else `default`).

    `delay_s` sleeps per request, to give jobs a duration. Every call is recorded in `calls`.
    Subclasses that add behaviour per request (faults, logs) override `answer_all`.
    """

    def __init__(
        self,
        answers: Mapping[str, str] | None = None,
        answer_fn: AnswerFn | None = None,
        default: str = "",
        delay_s: float = 0.0,
        model_name: str = "scripted",
    ) -> None:
        self.model_name = model_name
        self.answers = dict(answers or {})
        self.answer_fn = answer_fn
        self.default = default
        self.delay_s = delay_s
        self.sparse_attention_config: ResearchAttentionConfig | None = None
        self.calls: list[dict[str, Any]] = []

    def process_request(
        self,
        request: Request,
        generation_kwargs: Mapping[str, Any],
        request_kwargs: Mapping[str, Any],
        on_answer: AnswerCallback | None = None,
    ) -> RequestResponse:
        self.calls.append(
            {
                "context": request.context,
                "questions": request.question_list(),
                "answer_prefix": request.answer_prefix,
                "question_ids": request.ids(),
                "generation_kwargs": dict(generation_kwargs),
                "request_kwargs": dict(request_kwargs),
            }
        )
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.answer_all(request, on_answer)

    def answer_all(self, request: Request, on_answer: AnswerCallback | None) -> RequestResponse:
        """The scripted answer of each question, reported through `on_answer` as it comes."""
        answers = []
        for index, question in enumerate(request.question_list()):
            answers.append(self._answer(request.context, question))
            if on_answer is not None:
                on_answer(index, answers[-1], {})
        return RequestResponse(answers[0] if isinstance(request.questions, str) else answers)

    def _answer(self, context: str, question: str) -> str:
        if question in self.answers:
            return self.answers[question]
        if self.answer_fn is not None:
            return self.answer_fn(context, question)
        return self.default

    def set_sparse_attention_config(self, config: ResearchAttentionConfig | None) -> None:
        self.sparse_attention_config = config

    def describe(self) -> dict[str, Any]:
        return {"adapter": "scripted", "model_name": self.model_name}
