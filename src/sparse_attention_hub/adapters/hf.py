"""`ModelAdapterHF`: a Hugging Face causal LM answering requests under a switchable attention.

Evaluation setup (docs/methods.md §7): the context is prefilled once with the model's native dense
attention; every question is then answered from a cache cropped back to the context, its prefill
and each decode step computed by our attention function (dense for config None, else the sparse
config). Changing the sparse config swaps an attribute; weights are never reloaded.
"""

from __future__ import annotations

import gc
import inspect
import logging
import numbers
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from sparse_attention_hub.adapters.attention_backend import (
    ATTENTION_NAME,
    AttentionRun,
    attention_mode,
    register_attention,
)
from sparse_attention_hub.adapters.base import (
    AnswerCallback,
    ModelAdapter,
    Request,
    RequestResponse,
)
from sparse_attention_hub.adapters.context_cache import (
    PrefilledContext,
    check_cache_layers,
    new_cache,
)
from sparse_attention_hub.adapters.cpu_memory import keep_freed_memory
from sparse_attention_hub.adapters.generation import (
    GenerationOptions,
    TokenChooser,
    cut_at_stop,
    eos_token_ids,
)
from sparse_attention_hub.adapters.prompting import encode_request
from sparse_attention_hub.adapters.request_kwargs import check_request_kwargs
from sparse_attention_hub.adapters.sources import load_model, load_tokenizer, resolve_model_source
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.sparse_attention import (
    DEFAULT_MEMORY_MIB,
    AttentionStats,
    ResearchAttentionConfig,
    SparseAttentionConfig,
    SparseState,
)

logger = logging.getLogger(__name__)


class ModelAdapterHF(ModelAdapter):
    """A transformers causal LM behind the `ModelAdapter` contract.

    `model_name`: hub id, local directory, `.gguf` file or alias (see `sources`). `model_kwargs` /
    `tokenizer_kwargs` go to `from_pretrained` (copied). `device`: "cpu", "cuda", "cuda:N"; with a
    `device_map` in `model_kwargs` transformers places the model and inputs follow its embeddings.
    `stats_options` go to `AttentionStats` (e.g. output-error flag, sampling) for sparse configs.
    `attention_memory_mib` bounds the extra memory of one attention call of a question (its
    queries are processed in chunks; results do not depend on it).
    """

    def __init__(
        self,
        model_name: str,
        sparse_attention_config: SparseAttentionConfig | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        stats_options: Mapping[str, Any] | None = None,
        attention_memory_mib: int = DEFAULT_MEMORY_MIB,
    ) -> None:
        self.model_name = model_name
        self.source = resolve_model_source(model_name)  # cheap: a bad name fails before loading
        self.device = parse_device(device)
        self.stats_options = dict(stats_options or {})
        self.stats = make_stats(self.stats_options)
        self.attention_memory_mib = parse_memory_mib(attention_memory_mib)
        self.sparse_attention_config: ResearchAttentionConfig | None = None
        self.set_sparse_attention_config(
            sparse_attention_config
        )  # a bad config fails before loading
        model_kwargs = dict(model_kwargs or {})
        if model_kwargs.get("attn_implementation") == ATTENTION_NAME:
            raise ConfigError(
                f"attn_implementation {ATTENTION_NAME!r} is switched on per question; load the model with a native one"
            )
        register_attention()
        self._tokenizer = load_tokenizer(self.source, tokenizer_kwargs)
        model = load_model(self.source, model_kwargs)
        if "device_map" in model_kwargs:
            self.device = model.device  # placed by transformers: inputs go where the embeddings are
        else:
            model = model.to(self.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # sparse attention's temporaries reuse freed pages
        self.model: Any = model.eval().requires_grad_(False)
        self.native_attention = str(self.model.config._attn_implementation)
        self._cache_kwarg = cache_kwarg(self.model)
        check_cache_layers(self.model.config)
        with attention_mode(self.model, AttentionRun()):
            pass  # a model that cannot switch attention fails here, not at its first question
        self.eos_ids = eos_token_ids(self.model.generation_config, self._tokenizer)
        self._shared: _SharedContext | None = None  # the one context prefilled for a bundle
        logger.info(
            "loaded %s (%s) on %s, dtype %s",
            model_name,
            self.source.kind,
            self.device,
            self.model.dtype,
        )

    # ----- the contract ----------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def set_sparse_attention_config(self, config: SparseAttentionConfig | None) -> None:
        """Make `config` (None = dense) the active one; the next request uses it."""
        if config is not None and not isinstance(config, ResearchAttentionConfig):
            raise ConfigError(
                f"sparse_attention_config must be a ResearchAttentionConfig or None, got {type(config).__name__}"
            )
        self.sparse_attention_config = config

    def process_request(
        self,
        request: Request,
        generation_kwargs: Mapping[str, Any],
        request_kwargs: Mapping[str, Any],
        on_answer: AnswerCallback | None = None,
    ) -> RequestResponse:
        """Prefill the context once (dense), then answer each question from the cropped cache."""
        if self.model is None:
            raise RuntimeError(f"adapter for {self.model_name!r} was closed")
        options = GenerationOptions.from_kwargs(generation_kwargs)
        max_context_length = check_request_kwargs(request_kwargs)["max_context_length"]
        questions, question_ids = request.question_list(), request.ids()
        encoded = encode_request(
            self._tokenizer, request.context, questions, request.answer_prefix, max_context_length
        )
        if not encoded.context_ids and not all(encoded.question_ids):
            raise ValueError(
                "empty prompt: the request has no context tokens and an empty question"
            )
        stats = self._active_stats()
        info: dict[str, Any] = {
            "truncated_tokens": encoded.truncated_tokens,
            "context_tokens": len(encoded.context_ids),
        }
        answers: list[str] = []
        with torch.inference_mode():
            shared = self._shared
            prefill_s: float | None = None
            if shared is not None and shared.ids == encoded.context_ids:
                context = shared.context  # prefilled once for every config of the bundle
            else:
                t0 = time.perf_counter()
                context = self._prefill_context(encoded.context_ids)
                prefill_s = time.perf_counter() - t0
            state = self._new_state()
            for index, (question_id, ids) in enumerate(
                zip(question_ids, encoded.question_ids, strict=True)
            ):
                context.rewind()
                if state is not None:
                    state.crop(context.length)
                    # the id alone names the question: its masks must not depend on its position
                    # in the request (a resumed job asks only the pending questions)
                    state.begin_question(question_id, 0)
                run = AttentionRun(
                    self.sparse_attention_config, state, stats, self.attention_memory_mib
                )
                answer, timing = self._answer(ids, context, options, run, question_id, index)
                answers.append(answer)
                if stats is not None:
                    stats.flush()
                if prefill_s is not None and index == 0:
                    timing["context_prefill_s"] = prefill_s
                if on_answer is not None:
                    on_answer(index, answer, {**info, "timing": timing})
        return RequestResponse(answers[0] if isinstance(request.questions, str) else answers, info)

    @contextmanager
    def shared_context(self, request: Request, request_kwargs: Mapping[str, Any]) -> Iterator[Any]:
        """Prefill the request's context (dense) once; `process_request` reuses it meanwhile."""
        if self.model is None:
            raise RuntimeError(f"adapter for {self.model_name!r} was closed")
        encoded = encode_request(
            self._tokenizer,
            request.context,
            [],
            request.answer_prefix,
            check_request_kwargs(request_kwargs)["max_context_length"],
        )
        t0 = time.perf_counter()
        with torch.inference_mode():
            context = self._prefill_context(encoded.context_ids)
        seconds = time.perf_counter() - t0
        self._shared = _SharedContext(encoded.context_ids, context)
        try:
            yield {"context_prefill_s": seconds, "context_tokens": len(encoded.context_ids)}
        finally:
            self._shared = None  # one context cache per adapter at a time: freed here

    # ----- one question --------------------------------------------------------------------
    def _prefill_context(self, ids: list[int]) -> PrefilledContext:
        """The dense, native-attention prefill of the context: run once per request."""
        cache = new_cache()
        logits = self._forward(ids, cache, 0) if ids else None
        return PrefilledContext(cache, len(ids), logits)

    def _answer(
        self,
        ids: list[int],
        context: PrefilledContext,
        options: GenerationOptions,
        run: AttentionRun,
        question_id: str,
        index: int,
    ) -> tuple[str, dict[str, Any]]:
        """Question prefill then decode, all in our attention mode: (answer, its timing)."""
        choose = TokenChooser(options, question_id)
        stops = options.stops
        generated: list[int] = []
        cache = context.cache
        t0 = time.perf_counter()
        with attention_mode(self.model, run):
            position = context.length
            logits = context.last_logits
            if ids:
                self._label(run, question_id, index, "question_prefill", 0)
                logits = self._forward(ids, cache, position)
                position += len(ids)
            t1 = time.perf_counter()
            if logits is None:  # no context and no question tokens (checked before the prefill)
                raise ValueError("empty prompt")
            for step in range(1, options.max_new_tokens + 1):
                token = choose(logits)
                if token in self.eos_ids:
                    break
                generated.append(token)
                if stops and cut_at_stop(self._decode(generated), stops)[1]:
                    break
                if step == options.max_new_tokens:
                    break
                self._label(run, question_id, index, "decode", step)
                logits = self._forward([token], cache, position)
                position += 1
        timing = {
            "question_prefill_s": t1 - t0,
            "decode_s": time.perf_counter() - t1,
            "tokens_generated": len(generated),
        }
        return cut_at_stop(self._decode(generated), stops)[0], timing

    def _forward(self, ids: list[int], cache: Any, start: int) -> torch.Tensor:
        """One forward over `ids` at positions start..start+len-1; last-position logits (vocab,)."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        positions = torch.arange(start, start + len(ids), device=self.device)[None]
        output = self.model(
            input_ids=input_ids,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kwarg: cache},
        )
        return output.logits[0, -1]

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    @staticmethod
    def _label(run: AttentionRun, question_id: str, index: int, phase: str, step: int) -> None:
        if run.stats is not None:
            run.stats.set_context(question_id, index, phase, step)

    # ----- sparse state and statistics ----------------------------------------------------
    def _new_state(self) -> SparseState | None:
        return None if self.sparse_attention_config is None else SparseState()

    def _active_stats(self) -> AttentionStats | None:
        """Sparse configs record per-call statistics; dense runs record nothing (density 1)."""
        return None if self.sparse_attention_config is None else self.stats

    def start_statistics(self, path: Any, keep: Collection[str] = ()) -> AttentionStats:
        """Begin a job: a fresh recorder and file (`<path>/attention_stats.jsonl`), made active;
        the statistics of the samples in `keep` (answers a resumed job already saved) stay."""
        self.stats = make_stats(self.stats_options)
        self.stats.start(path, keep)
        return self.stats

    def use_statistics(self, handle: Any) -> None:
        """Make a job's recorder (from `start_statistics`) the active one again."""
        if handle is not None:
            self.stats = handle

    def statistics_summary(self) -> dict[str, Any]:
        """Density / output error of the current job; dense says 1.0 and 0.0 explicitly."""
        if self.sparse_attention_config is None:
            return AttentionStats.dense_summary()
        return self.stats.summary()

    def describe(self) -> dict[str, Any]:
        """What loaded model and attention this adapter runs (recorded in each job's config)."""
        config = self.sparse_attention_config
        return {
            "adapter": "hf",
            "model_name": self.model_name,
            "source_kind": self.source.kind,
            "source": self.source.location,
            "dtype": str(self.model.dtype).removeprefix("torch.")
            if self.model is not None
            else None,
            "device": str(self.device),
            "attn_implementation": self.native_attention,
            "sparse_attention_config": None if config is None else config.model_dump(mode="json"),
        }

    def close(self) -> None:
        """Free the model's memory (the adapter cannot be used afterwards)."""
        self.model = None
        gc.collect()
        if torch.cuda.is_available():  # a device_map may have placed it on GPUs besides `device`
            torch.cuda.empty_cache()


@dataclass
class _SharedContext:
    """A context prefilled by `shared_context`: its token ids and its cache."""

    ids: list[int]
    context: PrefilledContext


def cache_kwarg(model: Any) -> str:
    """The forward's name for the KV cache: `cache` from transformers 5.24 (`past_key_values`
    before, deprecated since and removed in 5.40)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def make_stats(options: Mapping[str, Any] | None) -> AttentionStats:
    """`AttentionStats(**options)`, built when the adapter is, so bad options fail early."""
    try:
        return AttentionStats(**dict(options or {}))
    except TypeError as exc:
        raise ConfigError(f"invalid stats_options {dict(options or {})}: {exc}") from exc


def parse_memory_mib(value: Any) -> int:
    """`attention_memory_mib`: an int >= 1 (MiB of extra memory per attention call)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(
            f"attention_memory_mib must be an int >= 1 (MiB per attention call), got {value!r}"
        )
    return int(value)


def parse_device(device: str | torch.device) -> torch.device:
    """`cpu`, `cuda` or `cuda:N` (checked against the visible GPUs)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
    elif parsed.type != "cpu":
        raise ConfigError(f"unsupported device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return parsed
