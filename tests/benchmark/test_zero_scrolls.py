"""ZeroSCROLLS: unscored test split with leaderboard files, and the validation metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark import create_benchmark_instance
from sparse_attention_hub.benchmark.results_io import read_raw_results
from sparse_attention_hub.benchmark.scorers import rouge_geometric_mean, scrolls_f1, scrolls_tokens
from sparse_attention_hub.benchmark.zero_scrolls import (
    ZeroScrolls,
    concordance_index,
    exponential_similarity,
    option_letter,
    score_sample,
)
from sparse_attention_hub.errors import ConfigError, DatasetLoadError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zero_scrolls"


def test_scrolls_tokens_fold_unicode_and_drop_stopwords() -> None:
    assert scrolls_tokens("Café, the Théâtre! It's") == ["cafe", "theatre"]  # "its" is a stopword
    assert scrolls_tokens("  Emajõgi\nRIVER ") == ["emajogi", "river"]


def test_scrolls_f1_max_over_references() -> None:
    assert scrolls_f1("The Café", ["cafe au lait", "tea"]) == pytest.approx(0.5)  # P 1, R 1/3
    assert scrolls_f1("Eleven long winters", ["For eleven winters."]) == pytest.approx(0.8)
    assert scrolls_f1("anything", []) == 0.0


def test_rouge_geometric_mean_takes_each_type_max_before_the_mean() -> None:
    # stemming: cats -> cat; R1 F 2/3, R2 F 1/2, RL F 2/3
    assert rouge_geometric_mean("cats sat here", ["cat sat there"]) == pytest.approx(
        (2 / 9) ** (1 / 3)
    )
    # ref 1 gives R1 2/3, R2 4/7, RL 2/3; ref 2 gives R1 1, R2 0, RL 1/3 -> (1 * 4/7 * 2/3)^(1/3)
    refs = ["alpha beta gamma delta epsilon zeta", "gamma beta alpha"]
    assert rouge_geometric_mean("alpha beta gamma", refs) == pytest.approx((8 / 21) ** (1 / 3))
    assert rouge_geometric_mean("", ["a b"]) == 0.0


def test_quality_option_letter() -> None:
    assert option_letter("(B) A singing shell") == "B"
    assert option_letter("The answer is D.") == "D"
    assert option_letter("no letter here") is None
    assert score_sample("quality", "B", ["(B) A singing shell"]) == 1.0
    assert score_sample("quality", "A. no, wait", ["(B) A singing shell"]) == 0.0
    assert score_sample("quality", "", ["(B) A singing shell"]) == 0.0


def test_space_digest_exponential_similarity() -> None:
    assert exponential_similarity("About 60% positive", "75%") == pytest.approx(2**-1.5)
    assert exponential_similarity("75 %", "75%") == 1.0
    assert exponential_similarity("most of them", "75%") == 0.0


def test_book_sum_sort_concordance_index() -> None:
    gold = "4, 3, 1, 2"
    assert concordance_index("4, 3, 1, 2", gold) == 1.0
    assert concordance_index("IDs: 4, 1, 3, 2", gold) == pytest.approx(5 / 6)  # only (3, 1) flipped
    assert concordance_index("Summary 2\nSummary 1\nSummary 3\nSummary 4", gold) == 0.0
    assert concordance_index("4, 3, 1", gold) == 0.0  # not a permutation
    assert concordance_index("4, 3, 1, 1", gold) == 0.0
    assert concordance_index("4, 3, 1, 2, 5", gold) == 0.0
    assert concordance_index("", gold) == 0.0


def test_split_is_validated_and_recorded() -> None:
    with pytest.raises(ConfigError, match="train"):
        ZeroScrolls(split="train")
    assert ZeroScrolls(split="validation").options()["split"] == "validation"
    assert ZeroScrolls().subset_metrics()["qasper"].startswith("none")
    assert ZeroScrolls(split="validation").subset_metrics()["book_sum_sort"] == "concordance_index"


def test_missing_task_is_a_load_error(tmp_path: Path) -> None:
    line = (FIXTURES / "default.jsonl").read_text().splitlines()[0]  # gov_report only
    (tmp_path / "default.jsonl").write_text(line + "\n")
    with pytest.raises(DatasetLoadError, match="qasper"):
        ZeroScrolls(["qasper"], data_path=tmp_path).load_samples()


def test_validation_refuses_rows_without_gold(tmp_path: Path) -> None:
    # the test split's rows (null `output`) must not be scored as validation with gold "None"
    with pytest.raises(DatasetLoadError, match="no local data file"):
        ZeroScrolls(["qasper"], data_path=FIXTURES, split="validation").load_samples()
    (tmp_path / "validation.jsonl").write_text((FIXTURES / "default.jsonl").read_text())
    with pytest.raises(DatasetLoadError, match="'qasper': 2 of 2 rows have no gold answer"):
        ZeroScrolls(["qasper"], data_path=tmp_path, split="validation").load_samples()


def test_test_split_writes_leaderboard_files_and_no_score(tmp_path: Path) -> None:
    bench = create_benchmark_instance("zero_scrolls", data_path=FIXTURES)
    samples = bench.load_samples()
    assert samples["task"].value_counts()["qasper"] == 2
    assert (samples["task"] == samples["subset"]).all()  # the task column is kept per row
    adapter = ScriptedAdapter(answer_fn=lambda context, question: f"len{len(question)}")
    metrics = bench.run_benchmark(adapter, tmp_path / "job")

    assert metrics["overall"] is None and metrics["scored"] is False
    assert sorted(metrics["unscored_tasks"]) == sorted(bench.all_datasets)
    qasper = metrics["tasks"]["qasper"]
    assert qasper["score"] is None and qasper["scored"] is False
    assert (qasper["n"], qasper["n_scored"]) == (2, 0)
    expected_chars = (
        sum(len(f"len{len(q)}") for q in samples.loc[samples["task"] == "qasper", "question"]) / 2
    )
    assert qasper["mean_response_chars"] == pytest.approx(expected_chars)
    assert metrics["tasks"]["gov_report"]["mean_response_chars"] == len("len0")

    for task in bench.all_datasets:
        board = json.loads((tmp_path / "job" / f"leaderboard_{task}.json").read_text())
        rows = samples[samples["task"] == task]
        assert board == {
            sid: f"len{len(q)}" for sid, q in zip(rows["sample_id"], rows["question"], strict=True)
        }
    assert sorted(json.loads((tmp_path / "job" / "leaderboard_qasper.json").read_text())) == [
        "qasper-t004",
        "qasper-t100",
    ]
    assert (
        json.loads((tmp_path / "job" / "config.json").read_text())["benchmark_options"]["split"]
        == "test"
    )
    assert adapter.calls[0]["generation_kwargs"]["max_new_tokens"] == 1024  # gov_report


VALIDATION_ANSWERS = {
    "government agency": (
        "Equipment purchase records were incomplete in nine of 14 offices and procurement training was uneven.",
        1.0,
    ),
    "TV episode": ("", 0.0),
    "meeting transcript": (
        "The team considered bright yellow, which users liked and which fits the fruit theme.",
        1.0,
    ),
    "a story and a question": (
        "Captain Ruiz rationed the water until a patrol ship answered the beacon.",  # 2nd reference
        1.0,
    ),
    "scientific article": ("91.2", 1.0),  # "91.2" -> "912" matches the reference "91.2"
    "novel or a movie script": ("Eleven long winters", 0.8),
    "multiple-choice": ("B", 1.0),
    "paragraphs from Wikipedia": ("Tartu", 0.0),
    "hotel": ("60%", 2**-1.5),
    "summaries of chapters": ("4, 1, 3, 2", 5 / 6),
}


def _validation_answer(context: str, question: str) -> str:
    return next(answer for key, (answer, _) in VALIDATION_ANSWERS.items() if key in context)


def test_validation_split_end_to_end(tmp_path: Path) -> None:
    bench = create_benchmark_instance(
        "zero_scrolls", data_path=FIXTURES / "validation", split="validation"
    )
    samples = bench.load_samples()
    squality = samples[samples["task"] == "squality"]
    assert len(squality) == 1 and len(squality.iloc[0]["answers"]) == 2  # rows sharing an id merge
    assert squality.iloc[0]["question"].strip().startswith("Question:")
    assert squality.iloc[0]["answer_prefix"] == "Answer:"
    assert samples.set_index("task").at["quality", "max_new_tokens"] == 10

    metrics = bench.run_benchmark(ScriptedAdapter(answer_fn=_validation_answer), tmp_path)
    scores = [score for _, score in VALIDATION_ANSWERS.values()]
    assert metrics["scored"] is True
    assert metrics["overall"] == pytest.approx(100 * sum(scores) / len(scores))
    order = [
        "gov_report",
        "summ_screen_fd",
        "qmsum",
        "squality",
        "qasper",
        "narrative_qa",
        "quality",
        "musique",
        "space_digest",
        "book_sum_sort",
    ]
    for task, expected in zip(order, scores, strict=True):
        assert metrics["tasks"][task]["score"] == pytest.approx(100 * expected), task
    assert metrics["tasks"]["qasper"]["metric"] == "f1"
    assert not list(tmp_path.glob("leaderboard_*.json"))
    raw = read_raw_results(tmp_path / "raw_results.csv")
    assert raw.set_index("task").at["squality", "answers"] == [
        "The captain rationed water and a patrol ship rescued them.",
        "Captain Ruiz rationed the water until a patrol ship answered the beacon.",
    ]
