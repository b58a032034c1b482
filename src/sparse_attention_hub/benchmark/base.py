"""Benchmark base: rows -> grouped requests -> saved predictions -> scores.

Order of persistence (docs/benchmarks.md §0.4): every prediction is appended to
`predictions.jsonl` as it finishes, `raw_results.csv` is written before scoring, and a scorer that
raises costs that task's score, never the predictions.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.adapters.base import ModelAdapter, Request
from sparse_attention_hub.adapters.request_kwargs import check_request_kwargs
from sparse_attention_hub.benchmark.averages import by_task, mean_of, mean_percent, score_by_task
from sparse_attention_hub.benchmark.bundle import JobTarget, Plan, run_jobs, timing_totals
from sparse_attention_hub.benchmark.grouping import RequestGroup, group_requests, limit_groups
from sparse_attention_hub.benchmark.loading import load_table, normalise_rows
from sparse_attention_hub.benchmark.results_io import (
    PredictionKey,
    append_predictions,
    prediction_key,
    read_predictions,
    write_json_atomic,
    write_raw_results,
)
from sparse_attention_hub.errors import ConfigError, DatasetLoadError, UnknownNameError
from sparse_attention_hub.result_files import (
    ATTENTION_STATS,
    CONFIG,
    EXTRA_FILE_PATTERNS,
    METRICS,
    PREDICTIONS,
    RAW_RESULTS,
    is_extra_file,
)

logger = logging.getLogger(__name__)


class Benchmark(ABC):
    """A named set of subsets, a way to load each, and a scorer.

    Subclasses set `benchmark_name`, `all_datasets` and `hub_id` (or implement `load_subset`),
    and implement `score_task`; most keep the default `aggregate` (macro mean of task scores, 0-100) and add
    per-task figures in `task_metrics`.
    """

    benchmark_name: ClassVar[str]
    all_datasets: ClassVar[list[str]]
    hub_id: ClassVar[str | None] = None
    sized_by_model: ClassVar[bool] = False
    """True when the rows depend on the evaluated model (synthetic RULER sizes them with its
    tokenizer in `bind_adapter`): a worker then loads them once per model, not once in all."""

    def __init__(
        self, subsets_to_run: Sequence[str] | None = None, data_path: str | Path | None = None
    ) -> None:
        # a subset named twice is run once (loading it twice would repeat every sample id)
        subsets = list(dict.fromkeys(subsets_to_run or self.all_datasets))
        unknown = [s for s in subsets if s not in self.all_datasets]
        if unknown:
            raise UnknownNameError(
                f"unknown subset(s) {unknown} of benchmark {self.benchmark_name!r}; "
                f"available: {', '.join(self.all_datasets)}"
            )
        self.subsets_to_run = subsets
        self.data_path = Path(data_path) if data_path is not None else None
        self._samples: pd.DataFrame | None = None
        # the last Plan, with the rows and max_requests it was made from (see prepare_requests)
        self._plan: tuple[pd.DataFrame, int | None, Plan] | None = None
        self.last_scored: pd.DataFrame | None = None

    # ----- what a benchmark defines -------------------------------------------------------
    def load_subset(self, subset: str) -> pd.DataFrame:
        """Rows of one subset in the normalised schema (see `loading.normalise_rows`).

        The default: `read_table(subset)` as it is, the subset being its rows' task. A
        benchmark whose rows need building or checking overrides it.
        """
        return normalise_rows(self.read_table(subset), subset, task=subset)

    def read_table(self, subset: str) -> pd.DataFrame:
        """One subset's raw table: config `subset`, split `test` of `hub_id` on the hub, or
        `<data_path>/<subset>.parquet|jsonl|json|csv` when `data_path` is given."""
        if self.hub_id is None and self.data_path is None:
            raise ConfigError(f"{self.benchmark_name} has no hub_id: pass data_path=...")
        return load_table(self.hub_id or "", subset, "test", self.data_path, [subset])

    @abstractmethod
    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        """Per-sample scores of one task: a frame indexed like `rows` with a `score` in [0, 1]."""

    def subset_metrics(self) -> dict[str, str]:
        """The metric each subset reports (shown by `sah list benchmarks`)."""
        return {subset: "score" for subset in self.all_datasets}

    def bind_adapter(self, adapter: ModelAdapter) -> None:  # noqa: B027 - optional hook
        """Called before loading; synthetic benchmarks take the model's tokenizer here (and say
        so with `sized_by_model`)."""

    def estimated_work(self) -> float | None:
        """Samples x context tokens of this instance, known without loading (None: unknown).

        The scheduler runs the costliest jobs first with it; it orders, it never limits.
        """
        return None

    def options(self) -> dict[str, Any]:
        """Parameters that change the generated rows (recorded in config.json and fingerprints)."""
        return {"data_path": str(self.data_path) if self.data_path else None}

    # ----- loading -----------------------------------------------------------------------
    def load_samples(self) -> pd.DataFrame:
        """All requested subsets, loaded once per instance; each call returns a fresh copy.

        A worker that runs many jobs on one instance reads the dataset (or generates the
        synthetic rows) once. A subset that fails to load is an error naming it (nothing cached).
        """
        if self._samples is None:
            self._samples = self._load_all()
        return self._samples.copy()

    def forget_samples(self) -> None:
        """Drop the loaded rows, e.g. when the tokenizer that sized them changed."""
        self._samples = None

    def _load_all(self) -> pd.DataFrame:
        frames = []
        for subset in self.subsets_to_run:
            try:
                frame = self.load_subset(subset)
            except (DatasetLoadError, ConfigError):
                raise  # a configuration error is the user's to fix: never retried as `dataset`
            except Exception as exc:
                raise DatasetLoadError(
                    f"{self.benchmark_name}: subset {subset!r} failed to load: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if "subset" not in frame.columns:
                frame = frame.assign(subset=subset)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    # ----- running -----------------------------------------------------------------------
    def run_benchmark(
        self,
        adapter: ModelAdapter,
        result_dir: str | Path,
        generation_kwargs: Mapping[str, Any] | None = None,
        request_kwargs: Mapping[str, Any] | None = None,
        job_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Generate the missing predictions, then score everything saved; returns the metrics.

        One job with the adapter's active sparse config: `run_jobs` with a single target.
        Predictions are keyed by (subset, sample_id): subsets that share ids (LongBench-v2's
        `0shot` and `cot`) can run in one call; an id repeated inside one subset is refused.
        """
        outcome: list[dict[str, Any] | BaseException] = []
        run_jobs(
            self,
            adapter,
            [JobTarget(Path(result_dir), job_info=job_info)],
            generation_kwargs or {},
            request_kwargs or {},
            lambda index, result: outcome.append(result),
        )
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def prepare_requests(self, adapter: ModelAdapter, request_kwargs: Mapping[str, Any]) -> Plan:
        """The samples, their keys and the requests to run, shared by every job of a bundle."""
        max_requests = check_request_kwargs(request_kwargs)["max_requests"]
        self.bind_adapter(adapter)
        # A worker runs many jobs on one instance: the rows it loaded once give the same Plan
        # every time (nothing mutates a Plan), so it is built once per rows and max_requests.
        cached = self._plan
        if cached is not None and cached[0] is self._samples and cached[1] == max_requests:
            return cached[2]
        samples = self.load_samples()
        keys = pd.Series(
            list(zip(samples["subset"].astype(str), samples["sample_id"].astype(str), strict=True)),
            index=samples.index,
            dtype=object,
        )
        repeated = keys[keys.duplicated()]
        if not repeated.empty:  # one key, one prediction: a repeat would reuse another's answer
            subset, sample_id = repeated.iloc[0]
            raise ConfigError(
                f"{self.benchmark_name}: sample ids must be unique within a subset, but "
                f"{repeated.nunique()} repeat (e.g. {sample_id!r} in subset {subset!r})"
            )
        groups = limit_groups(group_requests(samples), max_requests)
        selected = samples.loc[[i for g in groups for i in g.row_indices]]
        plan = Plan(samples, keys, groups, selected)
        if self._samples is not None:  # rows kept by this instance (not re-read per call)
            self._plan = (self._samples, max_requests, plan)
        return plan

    def open_job(
        self,
        adapter: ModelAdapter,
        result_path: Path,
        plan: Plan,
        generation_kwargs: Mapping[str, Any],
        request_kwargs: Mapping[str, Any],
        job_info: Mapping[str, Any] | None,
    ) -> tuple[dict[PredictionKey, dict[str, Any]], Any]:
        """Record the job's config, read its saved predictions, start its statistics.

        Returns (predictions so far, the adapter's statistics handle for this job).
        """
        result_path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(  # no fsync: rewritten by every run of the job (docs/benchmarks.md §0.4)
            result_path / CONFIG,
            self._config_record(adapter, generation_kwargs, request_kwargs, job_info),
            durable=False,
        )
        done = read_predictions(result_path / PREDICTIONS)
        logger.info(
            "%s: %d samples, %d already predicted",
            self.benchmark_name,
            len(plan.selected),
            sum(plan.keys[i] in done for i in plan.selected.index),
        )
        # the statistics of answers already saved stay: a resumed job reports the whole job
        answered = {sample_id for _, sample_id in done}
        statistics = adapter.start_statistics(result_path / ATTENTION_STATS, answered)
        return done, statistics

    def finish_job(
        self,
        adapter: ModelAdapter,
        result_path: Path,
        plan: Plan,
        done: Mapping[PredictionKey, Mapping[str, Any]],
    ) -> dict[str, Any]:
        """raw_results.csv, scores, metrics.json (with statistics and `timing`) of a job."""
        records = [done[plan.keys[i]] for i in plan.selected.index]
        results = plan.selected.assign(prediction=[record["prediction"] for record in records])
        # the predictions are durable already; the scored copy below is synced
        write_raw_results(result_path / RAW_RESULTS, results, durable=False)

        scored, metrics = self._score(results)
        metrics.update(adapter.statistics_summary())
        metrics["timing"] = timing_totals(records)
        counts = Counter(plan.samples["task"])
        for task, entry in metrics.get("tasks", {}).items():
            if isinstance(entry, dict) and task in counts:
                entry.setdefault("n_available", int(counts[task]))
        write_raw_results(result_path / RAW_RESULTS, scored)
        for name, payload in self.extra_outputs(scored).items():
            if not is_extra_file(name):  # reset_job_dir would leave it behind
                raise ValueError(
                    f"{self.benchmark_name}: extra output {name!r} matches none of "
                    f"result_files.EXTRA_FILE_PATTERNS {EXTRA_FILE_PATTERNS}"
                )
            write_json_atomic(result_path / name, payload)
        write_json_atomic(result_path / METRICS, metrics)
        return metrics

    def run_group(
        self,
        adapter: ModelAdapter,
        rows: pd.DataFrame,
        group: RequestGroup,
        generation_kwargs: Mapping[str, Any],
        request_kwargs: Mapping[str, Any],
        save: Callable[[dict[str, Any]], None],
        context_share: Mapping[str, float] | None = None,
    ) -> None:
        """One request for the still-missing questions of a group; each answer saved as it comes.

        `context_share` (this job's share of a context prefill done for a whole bundle) goes
        into the timing of the group's first saved answer.
        """
        ids = [str(v) for v in rows["sample_id"]]
        request = Request(
            context=group.context,
            questions=[str(q) for q in rows["question"]],
            answer_prefix=group.answer_prefix,
            question_ids=ids,
        )
        kwargs = dict(generation_kwargs)  # a new dict per group: the caller's stays untouched
        user_cap = generation_kwargs.get("max_new_tokens")
        kwargs["max_new_tokens"] = (
            group.max_new_tokens if user_cap is None else min(int(user_cap), group.max_new_tokens)
        )
        saved: set[int] = set()

        def record(index: int, answer: str, info: Mapping[str, Any]) -> None:
            entry: dict[str, Any] = {
                "subset": group.subset,
                "sample_id": ids[index],
                "prediction": answer,
            }
            if info.get("truncated_tokens") is not None:
                entry["truncated_tokens"] = info["truncated_tokens"]
            timing = dict(info.get("timing") or {})
            if "context_prefill_s" in timing:  # the adapter prefilled this context itself
                timing.setdefault("contexts_prefilled", 1.0)
            if context_share and not saved:
                timing.update(context_share)
            if timing:
                entry["timing"] = timing
            save(entry)
            saved.add(index)

        response = adapter.process_request(request, kwargs, request_kwargs, record)
        answers = response.response_list()
        if len(answers) != len(ids):
            raise RuntimeError(f"adapter returned {len(answers)} answers for {len(ids)} questions")
        for index, answer in enumerate(answers):  # adapters that did not report as they went
            if index not in saved:
                record(index, answer, response.info)

    @staticmethod
    def save_prediction(
        path: Path, done: dict[tuple[str, str], dict[str, Any]], record: dict[str, Any]
    ) -> None:
        append_predictions(path, [record])
        done[prediction_key(record["subset"], record["sample_id"])] = record

    def extra_outputs(self, scored: pd.DataFrame) -> dict[str, Any]:
        """Extra JSON files for the result directory, by file name (ZeroSCROLLS leaderboards);
        each name matches one of `result_files.EXTRA_FILE_PATTERNS`, so a re-run removes it.

        Called with the scored rows after raw_results.csv is written, before metrics.json.
        """
        return {}

    # ----- scoring -----------------------------------------------------------------------
    def post_run_evaluate(self, results_df: pd.DataFrame) -> dict[str, Any]:
        """Score saved predictions (a pure function of them); a failing task records its error.

        The per-sample scores are kept in `last_scored` (every row, NaN where a scorer failed).
        """
        self.last_scored, metrics = self._score(results_df)
        return metrics

    def _score(self, results_df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        """(every row with its per-sample scores, the metrics)."""
        scored, every_row, errors = score_by_task(results_df, self.score_task)
        metrics = self.aggregate(scored.sort_index())
        metrics.setdefault("benchmark", self.benchmark_name)
        metrics.setdefault("scale", "0-100")
        metrics.setdefault("buckets", {})
        metrics.setdefault("missing_subsets", [])
        metrics.setdefault("errors", {}).update(errors)
        for task, message in errors.items():
            metrics.setdefault("tasks", {})[task] = {"score": None, "n_scored": 0, "error": message}
        # tasks left out of `overall` for want of a score are listed, never silently dropped
        metrics["unscored_tasks"] = [
            str(task)
            for task, entry in metrics.get("tasks", {}).items()
            if isinstance(entry, dict) and entry.get("score") is None
        ]
        return every_row, metrics

    def aggregate(self, scored: pd.DataFrame) -> dict[str, Any]:
        """Macro average: each task's `task_metrics`, overall = mean of the task scores."""
        tasks = {str(task): self.task_metrics(str(task), rows) for task, rows in by_task(scored)}
        return {
            "benchmark": self.benchmark_name,
            "overall": mean_of([t["score"] for t in tasks.values()]),
            "tasks": tasks,
        }

    def task_metrics(self, task: str, rows: pd.DataFrame) -> dict[str, Any]:
        """One task's entry of metrics.json: `score` = 100 x mean per-sample score, `n_scored`.

        A benchmark with more per-task figures (counts, rates, buckets) adds them here.
        """
        return {"score": mean_percent(rows["score"]), "n_scored": int(rows["score"].notna().sum())}

    def _config_record(
        self,
        adapter: ModelAdapter,
        generation_kwargs: Mapping[str, Any],
        request_kwargs: Mapping[str, Any],
        job_info: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        from sparse_attention_hub.versions import package_versions

        record: dict[str, Any] = {
            "benchmark": self.benchmark_name,
            "subsets": self.subsets_to_run,
            "benchmark_options": self.options(),
            "model": adapter.model_name,
            "generation_kwargs": dict(generation_kwargs),
            "request_kwargs": dict(request_kwargs),
            "versions": package_versions(),
            "pid": os.getpid(),
            "adapter": adapter.describe(),
        }
        if job_info:
            record["job"] = dict(job_info)
        return record
