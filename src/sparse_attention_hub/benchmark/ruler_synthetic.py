"""`ruler_synthetic`: RULER-style tasks generated offline from a seed (docs/benchmarks.md §9).

Eleven tasks after Hsieh et al., "RULER: What's the Real Context Size of Your Long-Context
Language Models?" (2024): eight needle-in-a-haystack variants, variable tracking (`vt`), common
words (`cwe`) and frequent coded words (`fwe`). Samples are sized to each target length with the
evaluated model's tokenizer and cached on disk, so the quickstart runs with no download at all.

Scores are NOT numerically comparable with published RULER tables: the essay haystack is our own
bundled prose (RULER uses Paul Graham essays), the word lists are our own, and sentences are split
by a regex instead of NLTK. Compare methods against dense attention on the same rows instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.adapters.base import ModelAdapter
from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.loading import normalise_rows
from sparse_attention_hub.benchmark.registry import register_benchmark
from sparse_attention_hub.benchmark.results_io import write_text_atomic
from sparse_attention_hub.benchmark.scorers import ruler_aggregate, ruler_score_rows
from sparse_attention_hub.benchmark.synthetic.generate import GENERATOR_VERSION, generate_rows
from sparse_attention_hub.benchmark.synthetic.resources import CHECKSUMS
from sparse_attention_hub.benchmark.synthetic.sizing import tokenizer_fingerprint
from sparse_attention_hub.benchmark.synthetic.tasks import TASKS
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.files import cache_dir
from sparse_attention_hub.hashing import json_sha256

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """`$SAH_CACHE_DIR/ruler_synthetic`, else `~/.cache/sparse_attention_hub/ruler_synthetic`."""
    return cache_dir("ruler_synthetic")


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"ruler_synthetic {name} must be an int >= {minimum}, got {value!r}")
    return value


@register_benchmark("ruler_synthetic")
class RulerSynthetic(Benchmark):
    """Generated RULER-style tasks; subsets are task names, lengths are an option.

    `tokenizer` is a tokenizer object or a name/path for `AutoTokenizer`; when omitted it is taken
    from the adapter (`adapter.tokenizer`) before loading. `template_overhead` reserves tokens for
    a chat template. Rows are cached under `cache_dir` (default: `default_cache_dir()`), which is
    not an option of the rows (it does not enter `options()`); `data_path` is unused.
    """

    benchmark_name = "ruler_synthetic"
    all_datasets: ClassVar[list[str]] = list(TASKS)
    sized_by_model = True

    def __init__(
        self,
        subsets_to_run: Sequence[str] | None = None,
        data_path: str | Path | None = None,
        *,
        context_lengths: int | Sequence[int] = (4096,),
        num_samples: int = 25,
        seed: int = 42,
        tokenizer: Any = None,
        template_overhead: int = 0,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(subsets_to_run, data_path)
        lengths = [context_lengths] if isinstance(context_lengths, int) else list(context_lengths)
        if not lengths:
            raise ConfigError("ruler_synthetic context_lengths must not be empty")
        self.context_lengths = [_positive_int("context_lengths", v, 64) for v in lengths]
        self.num_samples = _positive_int("num_samples", num_samples)
        self.seed = _positive_int("seed", seed, 0)
        self.template_overhead = _positive_int("template_overhead", template_overhead, 0)
        self.tokenizer = tokenizer
        self._tokenizer_given = tokenizer is not None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._fingerprint: dict[str, str] | None = None

    def options(self) -> dict[str, Any]:
        tokenizer = self.tokenizer
        name = tokenizer if isinstance(tokenizer, str) or tokenizer is None else None
        if tokenizer is not None and name is None:
            name = str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__))
        return {
            "context_lengths": self.context_lengths,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "template_overhead": self.template_overhead,
            "tokenizer": name,
            "generator_version": GENERATOR_VERSION,
        }

    def subset_metrics(self) -> dict[str, str]:
        return {task: "string_match_all" for task in self.all_datasets}

    def estimated_work(self) -> float:
        """num_samples rows per length and subset, each about its length in tokens."""
        return float(len(self.subsets_to_run) * self.num_samples * sum(self.context_lengths))

    def bind_adapter(self, adapter: ModelAdapter) -> None:
        """Size samples with the evaluated model's tokenizer unless one was given.

        Run with another model, the rows are re-sized with that model's tokenizer (never
        silently with the previous one).
        """
        if self._tokenizer_given:
            return
        try:
            tokenizer = adapter.tokenizer
        except NotImplementedError:
            logger.warning("%s exposes no tokenizer", type(adapter).__name__)
            tokenizer = None
        if tokenizer is not self.tokenizer:
            self.tokenizer, self._fingerprint = tokenizer, None
            self.forget_samples()

    def _loaded_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise ConfigError(
                "ruler_synthetic needs a tokenizer to size its samples: pass tokenizer=... or run "
                "it with an adapter that exposes one"
            )
        if isinstance(self.tokenizer, str):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
        return self.tokenizer

    # ----- rows ----------------------------------------------------------------------------
    def load_subset(self, subset: str) -> pd.DataFrame:
        rows = [row for length in self.context_lengths for row in self.rows_for(subset, length)]
        return normalise_rows(pd.DataFrame(rows), subset, id_columns=("sample_id",))

    def cache_path(self, task: str, length: int) -> Path:
        """Where the rows of (task, length) live, keyed by everything that changes them."""
        if self._fingerprint is None:
            self._fingerprint = tokenizer_fingerprint(self._loaded_tokenizer())
        key = {
            "seed": self.seed,
            "task": task,
            "length": length,
            "num_samples": self.num_samples,
            "template_overhead": self.template_overhead,
            "tokenizer": self._fingerprint,
            "generator_version": GENERATOR_VERSION,
            "resources": CHECKSUMS,
        }
        digest = json_sha256(key, compact=False)  # the spelling existing caches were keyed with
        return self.cache_dir / f"{task}-{length}-{digest[:20]}.json"

    def rows_for(self, task: str, length: int) -> list[dict[str, Any]]:
        """Cached rows of one (task, length), generated and saved on a miss."""
        path = self.cache_path(task, length)
        if path.exists():
            try:
                rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
                if len(rows) == self.num_samples:
                    return rows
            except (OSError, ValueError) as exc:
                logger.warning("ignoring unreadable cache %s: %s", path, exc)
        rows = generate_rows(
            task,
            length,
            self.num_samples,
            seed=self.seed,
            tokenizer=self._loaded_tokenizer(),
            template_overhead=self.template_overhead,
        )
        try:
            write_text_atomic(path, json.dumps(rows, ensure_ascii=False))
        except OSError as exc:  # a read-only cache costs time, not correctness
            logger.warning("could not cache %s rows at %s: %s", task, path, exc)
        return rows

    # ----- scoring -------------------------------------------------------------------------
    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        return ruler_score_rows(task, rows)

    def aggregate(self, scored: pd.DataFrame) -> dict[str, Any]:
        return ruler_aggregate(scored, self.benchmark_name)
