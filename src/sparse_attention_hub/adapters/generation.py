"""Generation options and next-token choice: greedy by default, seeded sampling when asked.

Sampling draws from a `torch.Generator` seeded per question from (seed, question id), so an answer
is reproducible and does not depend on which other questions shared its request.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 32


class GenerationOptions(BaseModel):
    """Validated generation kwargs. `stop` and `stop_strings` are synonyms (merged)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(DEFAULT_MAX_NEW_TOKENS, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # 0 = no top-k filter
    seed: int = 0
    stop: tuple[str, ...] = ()
    stop_strings: tuple[str, ...] = ()

    @field_validator("stop", "stop_strings", mode="before")
    @classmethod
    def _as_tuple(cls, value: Any) -> Any:
        if value is None:
            return ()
        return (value,) if isinstance(value, str) else value

    @field_validator("stop", "stop_strings")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s for s in value):
            raise ValueError("stop strings must be non-empty")
        return value

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> GenerationOptions:
        """Parse generation kwargs; an unknown key is a ValueError listing the supported ones."""
        unknown = sorted(set(kwargs) - set(cls.model_fields))
        if unknown:
            raise ValueError(
                f"unsupported generation kwargs {unknown}; supported: {', '.join(cls.model_fields)}"
            )
        options = cls.model_validate(dict(kwargs))
        sampling_only = {"temperature", "top_p", "top_k", "seed"} & set(kwargs)
        if sampling_only and not options.do_sample:
            logger.warning(
                "generation kwargs %s have no effect with do_sample=False (greedy)",
                sorted(sampling_only),
            )
        return options

    @property
    def stops(self) -> tuple[str, ...]:
        return self.stop + self.stop_strings


class TokenChooser:
    """Picks the next token from last-position logits `(vocab,)`: argmax, or a seeded draw.

    Sampling filters with transformers' own temperature / top-k / top-p warpers.
    """

    def __init__(self, options: GenerationOptions, question_id: str) -> None:
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.generator: torch.Generator | None = None
        self.warpers = LogitsProcessorList()
        if options.do_sample:
            self.generator = torch.Generator().manual_seed(question_seed(options.seed, question_id))
            if options.temperature != 1.0:
                self.warpers.append(TemperatureLogitsWarper(options.temperature))
            if options.top_k:
                self.warpers.append(TopKLogitsWarper(options.top_k))
            if options.top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(options.top_p))

    def __call__(self, logits: torch.Tensor) -> int:
        if self.generator is None:
            return int(torch.argmax(logits).item())
        scores = logits.detach().float().cpu()[None]  # drawn on CPU: same draws on every device
        no_history = torch.empty(1, 0, dtype=torch.long)  # the warpers used ignore past tokens
        scores = self.warpers(no_history, scores)  # type: ignore[arg-type]
        probs = torch.softmax(scores[0], dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator).item())


def question_seed(seed: int, question_id: str) -> int:
    """A 63-bit seed from SHA-256 of (seed, question id); Python's hash() is salted per process."""
    digest = hashlib.sha256(f"{seed}\x00{question_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def eos_token_ids(generation_config: Any, tokenizer: Any) -> frozenset[int]:
    """Union of the generation config's EOS (int, list or None) and the tokenizer's EOS."""
    ids: set[int] = set()
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, Iterable):
        ids.update(int(i) for i in configured)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def cut_at_stop(text: str, stops: Iterable[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string, and whether one occurred."""
    positions = [index for stop in stops if (index := text.find(stop)) >= 0]
    return (text[: min(positions)], True) if positions else (text, False)
