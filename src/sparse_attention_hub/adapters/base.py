"""The contract between benchmarks and models: a request of questions about one context."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the contract names the config type; importing it would load torch
    from sparse_attention_hub.sparse_attention import ResearchAttentionConfig


@dataclass(frozen=True)
class Request:
    """One context and every question asked about it.

    The context is prefilled once; each question is answered from the context alone.
    `question_ids` (one per question, e.g. benchmark sample ids) seed random maskers and label
    statistics, so a question draws the same masks whatever order it is asked in.
    """

    context: str
    questions: list[str] | str
    answer_prefix: str = ""
    question_ids: list[str] | None = None

    def question_list(self) -> list[str]:
        return [self.questions] if isinstance(self.questions, str) else list(self.questions)

    def ids(self) -> list[str]:
        """Stable ids of the questions, in order (positional ids when none were given)."""
        questions = self.question_list()
        if self.question_ids is None:
            return [str(i) for i in range(len(questions))]
        if len(self.question_ids) != len(questions):
            raise ValueError(
                f"Request has {len(questions)} questions but {len(self.question_ids)} question_ids"
            )
        return list(self.question_ids)


@dataclass(frozen=True)
class RequestResponse:
    """Answers in the shape of the request: a str for one str question, else a list."""

    responses: list[str] | str
    info: dict[str, Any] = field(default_factory=dict)

    def response_list(self) -> list[str]:
        return [self.responses] if isinstance(self.responses, str) else list(self.responses)


AnswerCallback = Callable[[int, str, Mapping[str, Any]], None]
"""`on_answer(question_index, answer, info)`: called as each question finishes.

`info` holds the request's facts (`truncated_tokens`, `context_tokens`) and, from adapters that
measure them, this answer's `timing` (`question_prefill_s`, `decode_s`, `tokens_generated`, and
`context_prefill_s` when this call prefilled the context itself)."""


class ModelAdapter(ABC):
    """What a benchmark needs from a model; the executor swaps sparse configs through it."""

    model_name: str
    model: Any = None
    """The loaded torch module, or None (an adapter without weights, or one closed): the worker
    checks that every weight of it is on the worker's device."""

    @abstractmethod
    def process_request(
        self,
        request: Request,
        generation_kwargs: Mapping[str, Any],
        request_kwargs: Mapping[str, Any],
        on_answer: AnswerCallback | None = None,
    ) -> RequestResponse:
        """Answer every question of `request` from a context prefilled once.

        `on_answer`, when given, is called with each answer as soon as it exists, so a benchmark
        can save it before the next question runs (a crash then loses at most one answer).
        """

    def set_sparse_attention_config(self, config: ResearchAttentionConfig | None) -> None:
        """Switch the sparse-attention config (None = dense) without reloading weights."""
        raise NotImplementedError(f"{type(self).__name__} cannot switch sparse-attention configs")

    def describe(self) -> dict[str, Any]:
        """What this adapter runs (recorded in each job's config.json, to reproduce it)."""
        return {"adapter": type(self).__name__, "model_name": self.model_name}

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer; synthetic benchmarks size their samples with it."""
        raise NotImplementedError(f"{type(self).__name__} exposes no tokenizer")

    @contextmanager
    def shared_context(self, request: Request, request_kwargs: Mapping[str, Any]) -> Iterator[Any]:
        """Prefill `request`'s context once for several sparse configs (DESIGN.md, Bundles).

        While the block is open, `process_request` calls for a request with the same context
        (any config, any questions) answer from this one prefill, so a bundle of jobs pays one
        context prefill per request. Yields `{"context_prefill_s", "context_tokens"}`, or None
        from adapters that cannot share (each call then prefills on its own, as without it).
        At most one shared context is held: its cache is freed when the block ends.
        """
        yield None

    def start_statistics(self, path: Any, keep: Collection[str] = ()) -> Any:
        """Begin a job's attention-statistics file; returns that job's recorder.

        The statistics of the sample ids in `keep` (answers already saved: a resumed job) stay.
        The returned handle (None for adapters without statistics) is what `use_statistics`
        takes to switch back to this job when several jobs interleave on one adapter.
        """
        return None

    def use_statistics(self, handle: Any) -> None:  # noqa: B027 - optional hook
        """Record the following requests into the job recorder `start_statistics` returned."""

    def statistics_summary(self) -> dict[str, Any]:
        """Aggregated attention statistics of the current job (density, output error)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model's memory."""


AdapterFactory = Callable[
    [str, "ResearchAttentionConfig | None", Mapping[str, Any], Mapping[str, Any], str],
    ModelAdapter,
]
"""`factory(model_name, sparse_attention_config, model_kwargs, tokenizer_kwargs, device)`: how a
worker builds its adapter (`AdapterConfig.factory`; `ModelAdapterHF` itself is the default)."""
