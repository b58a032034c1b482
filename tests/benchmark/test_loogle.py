"""LooGLE: literal-only cloze parsing, micro-averaged cloze matches, BLEU/ROUGE/METEOR, optional
BERTScore, and the four subsets end to end from fixtures."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark import create_benchmark_instance, loogle
from sparse_attention_hub.benchmark.loogle import (
    LooGLE,
    cloze_counts,
    text_metrics,
    wordnet_missing,
)
from sparse_attention_hub.benchmark.results_io import read_raw_results
from sparse_attention_hub.benchmark.scorers import parse_literal_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "loogle"
REFERENCE = {"<mask-0>": "Thomas Rennard", "<mask-1>": "Stalbridge"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{'<mask-0>': 'Bob', '<mask-1>': 3}", {"<mask-0>": "Bob", "<mask-1>": 3}),
        ('  {"<mask-0>": "Bob"}\n', {"<mask-0>": "Bob"}),  # spaces before, newline after: as eval
        ('Answer: {"<mask-0>": "Bob"} done', None),  # changed: text around the dict
        ("{'<mask-0>': 'Bob'", None),  # unclosed
        ("{'<mask-0>': Bob}", None),  # a bare name is not a literal
        ("{'a': __import__('os').getcwd()}", None),  # never evaluated
        ("{'a': 'x' + 'y'}", None),  # an expression: eval would compute it, we do not
        ("{1, 2}", None),  # a set, not a dict
        ("no braces here", None),
        ("", None),
    ],
)
def test_parse_literal_dict(text: str, expected: dict[str, Any] | None) -> None:
    assert parse_literal_dict(text) == expected


# (answer, (exact, partial, parsed)) against REFERENCE, counted by hand as LooGLE's
# automatic_metrics.py counts them; "changed" marks the answers the first-{...}+JSON parser
# scored differently (issue 11).
CLOZE_CASES = [
    ("{'<mask-0>': 'Thomas Rennard', '<mask-1>': 'Stalbridge port'}", (1, 2, True)),
    ('{"<mask-0>": "Rennard"}', (0, 1, True)),  # a missing key matches nothing
    ('{"<mask-0>": "Thomas Rennard", "<mask-1>": "Stalbridge"}', (2, 2, True)),
    ("{'<mask-0>': 'thomas rennard'}", (0, 0, True)),  # case matters in both
    ("{'<mask-0>': 'Thomas Rennard', 'extra': 'x'}", (1, 1, True)),  # extra keys are ignored
    ('The masks are {"<mask-0>": "Thomas Rennard"}', (0, 0, False)),  # changed: was (1, 1)
    ('```python\n{"<mask-0>": "Thomas Rennard"}\n```', (0, 0, False)),  # changed: code fence
    ('{"<mask-0>": "Thomas Rennard", "<mask-1>": null}', (0, 0, False)),  # changed: JSON null
    ("{'<mask-0>': 'Thomas Rennard'} {'<mask-1>': 'Stalbridge'}", (0, 0, False)),  # changed
    ("{'<mask-0>': 'Thomas Rennard'}\nI chose it from the text.", (0, 0, False)),  # changed
    ("{'<mask-0>': 'Thomas Rennard', '<mask-1>': None}", (1, 1, True)),  # None: no partial
    ("{'<mask-0>': 5, '<mask-1>': ['Stalbridge']}", (0, 0, True)),  # official: crashes; ours 0
    ("{'<mask-0>': ['Thomas Rennard'], '<mask-1>': 'Stalbridge'}", (1, 1, True)),
    ("{'<mask-0>': 'Thomas", (0, 0, False)),
    ("", (0, 0, False)),  # the official scores '' as the text 'None': no dict
]


@pytest.mark.parametrize(("answer", "expected"), CLOZE_CASES)
def test_cloze_counts(answer: str, expected: tuple[int, int, bool]) -> None:
    assert cloze_counts(answer, REFERENCE) == expected


def test_text_metrics_hand_computed() -> None:
    values, failed = text_metrics("alpha beta", "alpha beta gamma delta", with_meteor=False)
    assert failed == []
    assert values["bleu1"] == pytest.approx(
        math.exp(-1)
    )  # unigram precision 1, brevity exp(1 - 4/2)
    assert values["rouge1"] == pytest.approx(0.5)  # recall 2/4
    assert values["rouge2"] == pytest.approx(1 / 3)  # 1 of 3 reference bigrams
    assert values["rougeL"] == pytest.approx(0.5)
    assert values["meteor"] is None
    same, _ = text_metrics("a b c d e", "a b c d e", with_meteor=False)
    assert same["bleu1"] == pytest.approx(1.0) and same["bleu4"] == pytest.approx(1.0)


def test_empty_prediction_is_scored_as_none_text() -> None:
    values, failed = text_metrics("", "None of them", with_meteor=False)
    assert failed == []
    assert values["rouge1"] == pytest.approx(1 / 3)  # "None" is one of three reference words
    assert values["bleu1"] == pytest.approx(math.exp(1 - 3))


def test_a_raising_metric_scores_zero_and_is_named() -> None:
    values, failed = text_metrics(
        "x y", "", with_meteor=False
    )  # rouge raises on an empty reference
    assert failed == ["rouge1", "rouge2", "rougeL"]
    assert values["rougeL"] == 0.0


def test_meteor_on_ordered_tokens() -> None:
    # identical 3-token texts never reach WordNet: Fmean 1, one chunk -> 1 - 0.5 * (1/3)^3
    values, failed = text_metrics("a b c", "a b c", with_meteor=True)
    assert failed == []
    assert values["meteor"] == pytest.approx(1 - 0.5 / 27)


def test_wordnet_check_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk

    def missing(resource: str) -> str:
        raise LookupError(resource)

    monkeypatch.setattr(nltk.data, "find", missing)
    assert "WordNet" in (wordnet_missing() or "")
    monkeypatch.setattr(nltk.data, "find", lambda resource: f"/data/{resource}")
    assert wordnet_missing() is None


def test_bertscore_uses_local_model_with_prediction_as_candidate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    class _Tensor(list[float]):
        def tolist(self) -> list[float]:
            return list(self)

    def fake_score(
        cands: list[str], refs: list[str], model_type: str, num_layers: int
    ) -> tuple[Any, ...]:
        seen.update(cands=cands, refs=refs, model_type=model_type, num_layers=num_layers)
        return _Tensor([0.1] * len(cands)), _Tensor([0.2] * len(cands)), _Tensor([0.5] * len(cands))

    monkeypatch.setitem(sys.modules, "bert_score", types.SimpleNamespace(score=fake_score))
    bench = LooGLE(["shortdep_qa"], bertscore_model="/models/roberta-large")
    rows = pd.DataFrame({"prediction": ["Lyon", ""], "answers": [["in Lyon"], ["in 1938"]]})
    scored = bench.score_task("shortdep_qa", rows)
    assert seen == {
        "cands": ["Lyon", "None"],
        "refs": ["in Lyon", "in 1938"],
        "model_type": "/models/roberta-large",
        "num_layers": 17,
    }
    assert scored["bertscore_f1"].tolist() == [0.5, 0.5]
    assert bench.options()["bertscore_model"] == "/models/roberta-large"


def test_bertscore_unavailable_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = pd.DataFrame({"prediction": ["Lyon"], "answers": [["in Lyon"]], "task": ["longdep_qa"]})

    def reason(bench: LooGLE) -> str:
        scored = rows.assign(**bench.score_task("longdep_qa", rows))
        entry = bench.aggregate(scored)["tasks"]["longdep_qa"]
        assert entry["bertscore_f1"] is None
        return str(entry["unavailable"]["bertscore_f1"])

    assert "bertscore_model=None" in reason(LooGLE())
    monkeypatch.setitem(sys.modules, "bert_score", None)  # the import fails
    assert "not installed" in reason(LooGLE(bertscore_model="/nowhere"))

    def broken(**kwargs: Any) -> None:
        raise OSError("no such model")

    monkeypatch.setitem(sys.modules, "bert_score", types.SimpleNamespace(score=broken))
    assert reason(LooGLE(bertscore_model="/nowhere")) == "BERTScore failed: OSError: no such model"


FIXTURE_ANSWERS = {
    # shortdep_qa: rougeL recall 1, 0 ("" -> "None"), 1/2
    "Who engineered the Harwick Canal?": "Thomas Rennard engineered the canal",
    "When did the last commercial boat unload at the basin?": "",
    "Where did Mirelle Ostrova train as a chemist?": "Lyon",
    # longdep_qa: 6 of 11 and 4 of 9 reference words
    "How did Ostrova's view": "She argued impurities set the colour",
    "What ended the canal's": "railway competition ended trade",
    # shortdep_cloze: (exact, partial, masks) = (1, 2, 2), (2, 2, 2), unparsable (0, 0, 1)
    "surveyed the Calder": "{'<mask-0>': 'Thomas Rennard', '<mask-1>': 'Stalbridge port'}",
    "moved her laboratory": '{"<mask-0>": "Mirelle Ostrova", "<mask-1>": "Grenoble"}',
    "In 1931 she joined": "{'<mask-0>': 'Institut",
}


def _answer(context: str, question: str) -> str:
    if not question:  # the summarization task has no question: repeat the reference
        return "sink tokens and a local window keep most accuracy with eight times less memory"
    return next(answer for key, answer in FIXTURE_ANSWERS.items() if key in question)


def test_loogle_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loogle, "wordnet_missing", lambda: "no WordNet here")
    bench = create_benchmark_instance("loogle", data_path=FIXTURES)
    adapter = ScriptedAdapter(answer_fn=_answer)
    metrics = bench.run_benchmark(adapter, tmp_path)
    tasks = metrics["tasks"]

    short = tasks["shortdep_qa"]
    assert short["score"] == pytest.approx(100 * (1 + 0 + 0.5) / 3)
    assert short["rougeL"] == short["score"]
    assert short["bleu1"] == pytest.approx(100 * (1 + 0 + math.exp(-1)) / 3)
    assert short["rouge2"] == pytest.approx(100 / 3)
    assert short["meteor"] is None and short["bertscore_f1"] is None
    assert short["unavailable"]["meteor"] == "no WordNet here"
    assert "bertscore_model=None" in short["unavailable"]["bertscore_f1"]
    assert short["metric_failures"] == {}
    assert tasks["longdep_qa"]["score"] == pytest.approx(100 * (6 / 11 + 4 / 9) / 2)

    cloze = tasks["shortdep_cloze"]
    assert cloze["exact_match"] == pytest.approx(60.0)  # micro: 3 of 5 masks, not the row mean 50
    assert cloze["partial_match"] == pytest.approx(80.0)
    assert cloze["score"] == cloze["exact_match"]
    assert (cloze["n_masks"], cloze["n_unparsed"], cloze["n_scored"]) == (5, 1, 3)
    assert tasks["longdep_summarization"]["score"] == pytest.approx(100.0)
    primaries = [
        tasks[t]["score"]
        for t in ("shortdep_qa", "longdep_qa", "shortdep_cloze", "longdep_summarization")
    ]
    assert metrics["overall"] == pytest.approx(sum(primaries) / 4)

    assert len(adapter.calls) == 7  # questions sharing a context (and prefix, cap) share a request
    raw = read_raw_results(tmp_path / "raw_results.csv")
    cloze_rows = raw[raw["task"] == "shortdep_cloze"]
    assert cloze_rows["score"].tolist() == [0.5, 1.0, 0.0]
    assert cloze_rows["cloze_exact"].astype(float).tolist() == [1.0, 2.0, 0.0]
    assert raw["sample_id"].tolist()[:3] == ["shortdep_qa:0", "shortdep_qa:1", "shortdep_qa:2"]
    assert bench.subset_metrics()["shortdep_cloze"].startswith("exact_match")


def test_empty_cloze_task_has_no_score() -> None:
    scored = pd.DataFrame(
        {
            "task": ["shortdep_cloze"],
            "cloze_exact": [0],
            "cloze_partial": [0],
            "cloze_masks": [0],
            "cloze_parsed": [True],
            "score": [None],
        }
    )
    metrics = LooGLE().aggregate(scored)
    assert metrics["tasks"]["shortdep_cloze"]["score"] is None
    assert metrics["overall"] is None
