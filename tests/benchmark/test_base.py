"""The benchmark base end to end with a scripted adapter: grouping, caps, limits, resume, scoring."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest

from sparse_attention_hub.adapters.base import AnswerCallback, Request, RequestResponse
from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark.averages import mean_of, mean_percent
from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.loading import normalise_rows
from sparse_attention_hub.benchmark.results_io import read_predictions, read_raw_results
from sparse_attention_hub.errors import ConfigError, DatasetLoadError, UnknownNameError

# subset "alpha": contexts X (2 questions), Y (1), X again with another prefix (1), Z (2)
ALPHA = [
    ("a1", "X", "q-a1", "A:", 50, ["r1"]),
    ("a2", "Y", "q-a2", "A:", 50, ["r2"]),
    ("a3", "X", "q-a3", "A:", 50, ["r3", "alt"]),
    ("a4", "X", "q-a4", "B:", 50, ["r4"]),
    ("a5", "Z", "q-a5", "A:", 8, ["r5"]),
    ("a6", "Z", "q-a6", "A:", 8, ["r6"]),
]
BETA = [("b1", "X", "q-b1", "A:", 20, ["s1"]), ("b2", "W", "q-b2", "", 20, ["s2"])]
Spec = tuple[str, str, str, str, int, list[str]]


def frame_of(subset: str, specs: list[Spec]) -> pd.DataFrame:
    """Normalised rows from (id, context, question, answer_prefix, max_new_tokens, answers)."""
    columns = ["id", "context", "question", "answer_prefix", "max_new_tokens", "answers"]
    return normalise_rows(pd.DataFrame(specs, columns=columns), subset)


class ToyBenchmark(Benchmark):
    """Two subsets in memory; exact-match scoring; `failing` tasks' scorers raise."""

    benchmark_name = "toy"
    all_datasets: ClassVar[list[str]] = ["alpha", "beta", "broken"]

    def __init__(self, subsets_to_run: list[str] | None = None, failing: tuple[str, ...] = ()):
        super().__init__(subsets_to_run)
        self.failing = failing

    def load_subset(self, subset: str) -> pd.DataFrame:
        if subset == "broken":
            raise FileNotFoundError("no such file: broken.parquet")
        return frame_of(subset, ALPHA if subset == "alpha" else BETA)

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        if task in self.failing:
            raise ZeroDivisionError("scorer bug")
        scores = [
            float(p.strip() in a) for p, a in zip(rows["prediction"], rows["answers"], strict=True)
        ]
        return pd.DataFrame({"score": scores}, index=rows.index)


def right_answers() -> dict[str, str]:
    """Correct answers for every question except a3 and b2."""
    answers = {f"q-{sid}": truth[0] for sid, *_, truth in ALPHA + BETA}
    answers.update({"q-a3": "wrong", "q-b2": "nope"})
    return answers


class FailingAdapter(ScriptedAdapter):
    """Raises on the request after `fail_after` successful ones (a crash mid-run)."""

    def __init__(self, fail_after: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_after = fail_after

    def process_request(
        self,
        request: Request,
        generation_kwargs: Mapping[str, Any],
        request_kwargs: Mapping[str, Any],
        on_answer: AnswerCallback | None = None,
    ) -> RequestResponse:
        if len(self.calls) >= self.fail_after:
            raise RuntimeError("GPU fell over")
        return super().process_request(request, generation_kwargs, request_kwargs, on_answer)


def test_requests_are_grouped_in_first_appearance_order(tmp_path: Path) -> None:
    adapter = ScriptedAdapter(answers=right_answers())
    ToyBenchmark(["alpha", "beta"]).run_benchmark(adapter, tmp_path)
    seen = [(c["context"], c["answer_prefix"], c["question_ids"]) for c in adapter.calls]
    assert seen == [
        ("X", "A:", ["a1", "a3"]),
        ("Y", "A:", ["a2"]),
        ("X", "B:", ["a4"]),
        ("Z", "A:", ["a5", "a6"]),
        ("X", "A:", ["b1"]),  # same context and prefix as a1, but another subset
        ("W", "", ["b2"]),
    ]
    assert adapter.calls[0]["questions"] == ["q-a1", "q-a3"]


def test_effective_cap_is_min_of_user_and_row_in_a_fresh_dict(tmp_path: Path) -> None:
    adapter = ScriptedAdapter(answers=right_answers())
    user_kwargs = {"max_new_tokens": 30, "temperature": 0.0}
    ToyBenchmark(["alpha"]).run_benchmark(adapter, tmp_path, user_kwargs)
    caps = [c["generation_kwargs"]["max_new_tokens"] for c in adapter.calls]
    assert caps == [30, 30, 30, 8]  # rows: 50, 50, 50, 8
    assert all(c["generation_kwargs"]["temperature"] == 0.0 for c in adapter.calls)
    assert user_kwargs == {"max_new_tokens": 30, "temperature": 0.0}  # not mutated
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["generation_kwargs"] == {"max_new_tokens": 30, "temperature": 0.0}
    assert config["subsets"] == ["alpha"]
    # every package a scorer or generator uses (docs/benchmarks.md §0.6), None if absent
    scoring = {"rouge", "rouge-score", "jieba", "fuzzywuzzy", "nltk", "bert-score", "scipy"}
    assert scoring <= set(config["versions"])
    assert config["versions"]["rouge"] == "1.0.1"


def test_without_a_user_cap_the_row_cap_is_used(tmp_path: Path) -> None:
    adapter = ScriptedAdapter(answers=right_answers())
    ToyBenchmark(["alpha"]).run_benchmark(adapter, tmp_path)
    assert [c["generation_kwargs"]["max_new_tokens"] for c in adapter.calls] == [50, 50, 50, 8]
    assert json.loads((tmp_path / "config.json").read_text())["generation_kwargs"] == {}


def test_max_requests_keeps_whole_groups_per_subset(tmp_path: Path) -> None:
    adapter = ScriptedAdapter(answers=right_answers())
    metrics = ToyBenchmark(["alpha", "beta"]).run_benchmark(
        adapter, tmp_path, request_kwargs={"max_requests": 3}
    )
    # alpha: X(2) + Y(1) = 3, next group would exceed; beta: b1 + b2 = 2
    assert [c["question_ids"] for c in adapter.calls] == [["a1", "a3"], ["a2"], ["b1"], ["b2"]]
    assert metrics["tasks"]["alpha"]["n_scored"] == 3
    assert metrics["tasks"]["alpha"]["n_available"] == 6
    assert metrics["tasks"]["beta"]["n_available"] == 2
    raw = read_raw_results(tmp_path / "raw_results.csv")
    assert sorted(raw["sample_id"]) == ["a1", "a2", "a3", "b1", "b2"]


def test_max_requests_smaller_than_the_first_group_still_runs_it(tmp_path: Path) -> None:
    adapter = ScriptedAdapter(answers=right_answers())
    ToyBenchmark(["alpha"]).run_benchmark(adapter, tmp_path, request_kwargs={"max_requests": 1})
    assert [c["question_ids"] for c in adapter.calls] == [["a1", "a3"]]


def test_scores_metrics_and_raw_results(tmp_path: Path) -> None:
    adapter = ScriptedAdapter(answers=right_answers())
    metrics = ToyBenchmark(["alpha", "beta"]).run_benchmark(adapter, tmp_path)
    assert metrics["tasks"]["alpha"]["score"] == pytest.approx(500 / 6)  # a3 wrong
    assert metrics["tasks"]["beta"]["score"] == pytest.approx(50.0)  # b2 wrong
    assert metrics["overall"] == pytest.approx((500 / 6 + 50) / 2)
    assert metrics["scale"] == "0-100" and metrics["errors"] == {}
    assert metrics["unscored_tasks"] == [] and metrics["missing_subsets"] == []
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics

    raw = read_raw_results(tmp_path / "raw_results.csv").set_index("sample_id")
    assert raw.loc["a3", "answers"] == ["r3", "alt"]  # lists round-trip
    assert isinstance(raw.loc["a3", "answers"], list)
    assert raw.loc["a3", "prediction"] == "wrong"
    assert raw["score"].to_dict() == {
        "a1": 1.0,
        "a2": 1.0,
        "a3": 0.0,
        "a4": 1.0,
        "a5": 1.0,
        "a6": 1.0,
        "b1": 1.0,
        "b2": 0.0,
    }


def test_predictions_are_appended_per_sample(tmp_path: Path) -> None:
    ToyBenchmark(["alpha"]).run_benchmark(ScriptedAdapter(answers=right_answers()), tmp_path)
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["sample_id"] for line in lines] == ["a1", "a3", "a2", "a4", "a5", "a6"]
    assert json.loads(lines[1])["prediction"] == "wrong"


def test_interrupted_run_resumes_without_redoing_finished_samples(tmp_path: Path) -> None:
    crashing = FailingAdapter(fail_after=2, answers=right_answers())
    with pytest.raises(RuntimeError, match="GPU fell over"):
        ToyBenchmark(["alpha"]).run_benchmark(crashing, tmp_path)
    assert set(read_predictions(tmp_path / "predictions.jsonl")) == {
        ("alpha", "a1"),
        ("alpha", "a3"),
        ("alpha", "a2"),
    }
    assert not (tmp_path / "metrics.json").exists()

    adapter = ScriptedAdapter(answers=right_answers())
    metrics = ToyBenchmark(["alpha"]).run_benchmark(adapter, tmp_path)
    assert [c["question_ids"] for c in adapter.calls] == [["a4"], ["a5", "a6"]]
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 6  # nothing predicted twice
    assert metrics["tasks"]["alpha"]["n_scored"] == 6

    again = ScriptedAdapter(answers=right_answers())
    assert ToyBenchmark(["alpha"]).run_benchmark(again, tmp_path) == metrics
    assert again.calls == []


def test_a_crash_mid_request_keeps_the_answers_already_given(tmp_path: Path) -> None:
    def answer(context: str, question: str) -> str:
        if question == "q-a6":  # the second question of context Z: the first is already saved
            raise RuntimeError("killed mid-request")
        return "r5"

    with pytest.raises(RuntimeError, match="killed mid-request"):
        ToyBenchmark(["alpha"]).run_benchmark(ScriptedAdapter(answer_fn=answer), tmp_path)
    assert ("alpha", "a5") in read_predictions(tmp_path / "predictions.jsonl")

    adapter = ScriptedAdapter(answers=right_answers())
    ToyBenchmark(["alpha"]).run_benchmark(adapter, tmp_path)
    assert [c["question_ids"] for c in adapter.calls] == [["a6"]]


def test_a_torn_last_prediction_is_redone_only_for_its_sample(tmp_path: Path) -> None:
    ToyBenchmark(["alpha"]).run_benchmark(ScriptedAdapter(answers=right_answers()), tmp_path)
    path = tmp_path / "predictions.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:15])  # a6 torn mid-line
    adapter = ScriptedAdapter(answers=right_answers())
    metrics = ToyBenchmark(["alpha"]).run_benchmark(adapter, tmp_path)
    assert [c["question_ids"] for c in adapter.calls] == [["a6"]]  # only the missing question
    assert [json.loads(line)["sample_id"] for line in path.read_text().splitlines()][-2:] == [
        "a5",
        "a6",
    ]
    assert metrics["tasks"]["alpha"]["n_scored"] == 6


def test_a_failing_scorer_records_its_error_and_keeps_predictions(tmp_path: Path) -> None:
    adapter = ScriptedAdapter(answers=right_answers())
    metrics = ToyBenchmark(["alpha", "beta"], failing=("beta",)).run_benchmark(adapter, tmp_path)
    assert metrics["errors"] == {"beta": "ZeroDivisionError: scorer bug"}
    assert metrics["tasks"]["beta"]["score"] is None  # its rows are 6, 7; the frame says 0, 1
    assert metrics["tasks"]["alpha"]["score"] == pytest.approx(500 / 6)
    assert metrics["overall"] == pytest.approx(500 / 6)  # only tasks with a score
    assert metrics["unscored_tasks"] == ["beta"]  # ... and the excluded one is listed
    raw = read_raw_results(tmp_path / "raw_results.csv").set_index("sample_id")
    assert raw.loc["b2", "prediction"] == "nope"
    assert raw.loc["a1", "score"] == 1.0 and pd.isna(raw.loc["b1", "score"])
    assert set(read_predictions(tmp_path / "predictions.jsonl")) >= {("beta", "b1"), ("beta", "b2")}

    # scoring is a pure function of saved predictions: fixed scorer, no new generation
    rerun = ScriptedAdapter(answers=right_answers())
    fixed = ToyBenchmark(["alpha", "beta"]).run_benchmark(rerun, tmp_path)
    assert rerun.calls == [] and fixed["errors"] == {}
    assert fixed["tasks"]["beta"]["score"] == pytest.approx(50.0)


def test_unknown_subset_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="alpha, beta, broken") as info:
        ToyBenchmark(["alpha", "gamma"])
    assert "gamma" in str(info.value)


def test_a_subset_named_twice_runs_once(tmp_path: Path) -> None:
    bench = ToyBenchmark(["beta", "alpha", "beta"])
    assert bench.subsets_to_run == ["beta", "alpha"]
    metrics = bench.run_benchmark(ScriptedAdapter(answers=right_answers()), tmp_path)
    assert metrics["tasks"]["beta"]["n_scored"] == 2


def test_a_subset_that_fails_to_load_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetLoadError, match="'broken' failed to load: FileNotFoundError"):
        ToyBenchmark(["alpha", "broken"]).run_benchmark(ScriptedAdapter(), tmp_path)


def test_unknown_request_kwargs_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_request"):
        ToyBenchmark(["alpha"]).run_benchmark(
            ScriptedAdapter(), tmp_path, request_kwargs={"max_request": 2}
        )


def test_means_never_divide_by_zero() -> None:
    assert mean_percent([]) is None
    assert mean_percent([float("nan")]) is None
    assert mean_percent([1.0, 0.0, None]) == 50.0  # type: ignore[list-item]
    assert mean_of([None, 10.0, float("nan"), 20.0]) == 15.0
    assert mean_of([]) is None


class MisalignedBenchmark(ToyBenchmark):
    """A scorer that forgets `index=rows.index`: must be an error, not silent NaN scores."""

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"score": [1.0] * len(rows)})


def test_a_scorer_frame_not_indexed_like_its_rows_is_an_error(tmp_path: Path) -> None:
    metrics = MisalignedBenchmark(["alpha", "beta"]).run_benchmark(
        ScriptedAdapter(answers=right_answers()), tmp_path
    )
    assert "not indexed like rows" in metrics["errors"]["beta"]
    assert metrics["tasks"]["beta"]["score"] is None  # its rows are 6, 7; the frame says 0, 1


class SharedIdBenchmark(ToyBenchmark):
    """Two subsets whose rows carry the same ids (as LongBench-v2's 0shot and cot do)."""

    def load_subset(self, subset: str) -> pd.DataFrame:
        prefix = "P:" if subset == "alpha" else "Q:"
        rows = [("same", "X", f"q-{subset}", prefix, 8, [f"r-{subset}"])]
        if subset == "broken":  # an id repeated inside one subset
            rows.append(("same", "Y", "q-other", prefix, 8, ["r"]))
        return frame_of(subset, rows)


def test_subsets_sharing_sample_ids_run_together_and_resume(tmp_path: Path) -> None:
    answers = {"q-alpha": "r-alpha", "q-beta": "wrong"}
    adapter = ScriptedAdapter(answers=answers)
    metrics = SharedIdBenchmark(["alpha", "beta"]).run_benchmark(adapter, tmp_path)
    assert [c["question_ids"] for c in adapter.calls] == [["same"], ["same"]]
    assert metrics["tasks"]["alpha"]["score"] == 100.0  # each subset keeps its own answer
    assert metrics["tasks"]["beta"]["score"] == 0.0
    saved = read_predictions(tmp_path / "predictions.jsonl")
    assert {k: r["prediction"] for k, r in saved.items()} == {
        ("alpha", "same"): "r-alpha",
        ("beta", "same"): "wrong",
    }
    raw = read_raw_results(tmp_path / "raw_results.csv")
    assert raw[["subset", "sample_id", "prediction"]].values.tolist() == [
        ["alpha", "same", "r-alpha"],
        ["beta", "same", "wrong"],
    ]
    rerun = ScriptedAdapter(answers=answers)
    assert SharedIdBenchmark(["alpha", "beta"]).run_benchmark(rerun, tmp_path) == metrics
    assert rerun.calls == []  # both finished samples are recognised on resume


def test_a_sample_id_repeated_within_a_subset_is_refused(tmp_path: Path) -> None:
    adapter = ScriptedAdapter(default="r")
    with pytest.raises(ConfigError, match=r"unique within a subset.*'same' in subset 'broken'"):
        SharedIdBenchmark(["alpha", "broken"]).run_benchmark(adapter, tmp_path)
    assert adapter.calls == []


class CountingBenchmark(ToyBenchmark):
    """Records every `load_subset` call."""

    def __init__(self, subsets_to_run: list[str]) -> None:
        super().__init__(subsets_to_run)
        self.loads: list[str] = []

    def load_subset(self, subset: str) -> pd.DataFrame:
        self.loads.append(subset)
        return super().load_subset(subset)


def test_samples_are_loaded_once_per_instance_and_served_as_copies(tmp_path: Path) -> None:
    bench = CountingBenchmark(["alpha", "beta"])
    first = bench.run_benchmark(ScriptedAdapter(answers=right_answers()), tmp_path / "one")
    second = bench.run_benchmark(ScriptedAdapter(answers=right_answers()), tmp_path / "two")
    assert bench.loads == ["alpha", "beta"] and first == second
    copy = bench.load_samples()
    copy["question"] = "changed"
    assert bench.load_samples()["question"].iloc[0] == "q-a1"  # the cached rows are untouched
    bench.forget_samples()
    bench.load_samples()
    assert bench.loads == ["alpha", "beta", "alpha", "beta"]


def test_the_request_plan_is_built_once_per_rows_and_max_requests() -> None:
    bench = CountingBenchmark(["alpha", "beta"])
    adapter = ScriptedAdapter()
    plan = bench.prepare_requests(adapter, {})
    assert bench.prepare_requests(adapter, {}) is plan  # the next job on this worker
    limited = bench.prepare_requests(adapter, {"max_requests": 1})
    assert limited is not plan and len(limited.groups) < len(plan.groups)
    assert bench.prepare_requests(adapter, {}) is not limited
    bench.forget_samples()  # rows re-read (another model's tokenizer): a new plan from them
    again = bench.prepare_requests(adapter, {})
    assert again is not plan and bench.loads == ["alpha", "beta", "alpha", "beta"]
    pd.testing.assert_frame_equal(again.selected, plan.selected)


def test_a_failed_load_is_not_cached() -> None:
    bench = CountingBenchmark(["alpha", "broken"])
    for _ in range(2):
        with pytest.raises(DatasetLoadError, match="broken"):
            bench.load_samples()
    assert bench.loads == ["alpha", "broken", "alpha", "broken"]


class HubOnly(Benchmark):
    """The smallest benchmark: name, subsets, `hub_id` and a scorer (the default loader)."""

    benchmark_name = "hub_only"
    all_datasets: ClassVar[list[str]] = ["dev"]
    hub_id = "my-org/hub-only"

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"score": [1.0] * len(rows)}, index=rows.index)


def test_the_default_loader_reads_the_subsets_local_copy(tmp_path: Path) -> None:
    rows = [
        {"id": "d1", "context": "C", "question": "q1", "answers": ["a"], "max_new_tokens": 4},
        {"id": "d2", "context": "C", "question": "q2", "answers": "b", "max_new_tokens": 4},
    ]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    samples = HubOnly(data_path=tmp_path).load_samples()
    assert list(samples["sample_id"]) == ["d1", "d2"] and set(samples["task"]) == {"dev"}
    assert list(samples["answers"]) == [["a"], ["b"]]


def test_without_hub_id_or_data_path_the_default_loader_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(HubOnly, "hub_id", None)
    with pytest.raises(ConfigError, match="hub_only has no hub_id: pass data_path"):
        HubOnly().load_samples()
