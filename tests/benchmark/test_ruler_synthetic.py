"""`ruler_synthetic`: determinism, realised lengths, caching, scoring and an end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark import create_benchmark_instance, ruler_synthetic
from sparse_attention_hub.benchmark.ruler_synthetic import RulerSynthetic
from sparse_attention_hub.benchmark.synthetic.generate import generate_rows
from sparse_attention_hub.benchmark.synthetic.tasks import TASKS
from sparse_attention_hub.errors import ConfigError, DatasetLoadError, UnknownNameError

Rows = dict[tuple[str, int], list[dict[str, Any]]]
TASK_NAMES = [
    "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
    "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe",
]  # fmt: skip
CAPS = {**dict.fromkeys(TASK_NAMES[:8], 128), "vt": 30, "cwe": 120, "fwe": 50}


class TokenizerAdapter(ScriptedAdapter):
    """A scripted adapter that exposes a real tokenizer, as ModelAdapterHF does."""

    def __init__(self, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer


def test_registry_entry_and_options() -> None:
    bench = create_benchmark_instance("ruler_synthetic", context_lengths=[1024, 2048], seed=7)
    assert bench.all_datasets == TASK_NAMES
    assert {name: spec.max_new_tokens for name, spec in TASKS.items()} == CAPS
    assert bench.options() == {
        "context_lengths": [1024, 2048],
        "num_samples": 25,
        "seed": 7,
        "template_overhead": 0,
        "tokenizer": None,
        "generator_version": "2",
    }
    assert bench.subset_metrics()["cwe"] == "string_match_all"
    assert "not numerically comparable" in " ".join((ruler_synthetic.__doc__ or "").split()).lower()
    with pytest.raises(UnknownNameError, match="niah_single_1, niah_single_2"):
        create_benchmark_instance("ruler_synthetic", ["qa_1"])


@pytest.mark.parametrize(
    "options",
    [
        {"context_lengths": []},
        {"context_lengths": [4096, 0]},
        {"context_lengths": ["4096"]},
        {"context_lengths": True},
        {"num_samples": 0},
        {"seed": -1},
        {"template_overhead": -5},
    ],
)
def test_invalid_options_raise(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="ruler_synthetic"):
        RulerSynthetic(**options)


def test_same_seed_same_rows_and_a_prefix_of_samples_is_reproduced(
    chat_tokenizer: Any, synthetic_rows: Rows
) -> None:
    for task in ("niah_multikey_1", "cwe"):
        again = generate_rows(task, 1024, 2, seed=42, tokenizer=chat_tokenizer)
        assert again == synthetic_rows[task, 1024][:2]


@pytest.mark.parametrize("task", TASK_NAMES)
def test_different_samples_and_seeds_differ(
    task: str, chat_tokenizer: Any, synthetic_rows: Rows
) -> None:
    rows = synthetic_rows[task, 1024]
    assert len({row["context"] for row in rows}) == len(rows)
    assert len({tuple(row["answers"]) for row in rows}) == len(rows)
    assert [row["sample_id"] for row in rows] == [f"{task}:1024:{i}" for i in range(3)]
    if task in ("niah_single_1", "vt"):
        other = generate_rows(task, 1024, 1, seed=43, tokenizer=chat_tokenizer)[0]
        assert other["context"] != rows[0]["context"] and other["seed"] == 43


def test_rows_do_not_depend_on_the_string_hash_seed(tmp_path: Path) -> None:
    """`random.Random(str)` is stable across processes; `hash()` would not be."""
    script = (
        "import json, sys\n"
        "from sparse_attention_hub.benchmark.synthetic.generate import generate_rows\n"
        "class Words:\n"
        "    def __call__(self, texts, add_special_tokens=True):\n"
        "        return {'input_ids': [t.split() for t in texts]}\n"
        "rows = [generate_rows(t, 600, 2, seed=5, tokenizer=Words()) for t in ('niah_multikey_2', 'fwe')]\n"
        "json.dump(rows, sys.stdout)\n"
    )
    outputs = []
    for hash_seed in ("1", "987"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        outputs.append(json.loads(result.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0][0][0]["sample_id"] == "niah_multikey_2:600:0"


def test_realised_length_is_recounted_fits_and_is_close(
    chat_tokenizer: Any, synthetic_rows: Rows
) -> None:
    for (task, length), rows in synthetic_rows.items():
        budget = length - CAPS[task]
        for row in rows:
            text = f"{row['context']}{row['question']} {row['answer_prefix']}"
            recount = len(chat_tokenizer(text, add_special_tokens=False)["input_ids"])
            assert row["length"] == recount
            assert row["length"] <= budget, task
            # within one haystack unit: a line of uuid needles is ~60 tokens
            slack = 5 if task in ("niah_single_2", "niah_single_3", "niah_multivalue") else 70
            assert row["length"] >= budget - slack, (task, length, row["length"], budget)
            assert row["context_length"] == length and row["max_new_tokens"] == CAPS[task]
            assert row["task"] == task and row["seed"] == 42


def test_template_overhead_is_reserved(chat_tokenizer: Any) -> None:
    row = generate_rows(
        "niah_single_2", 1024, 1, seed=42, tokenizer=chat_tokenizer, template_overhead=200
    )
    assert 1024 - 128 - 200 - 5 <= row[0]["length"] <= 1024 - 128 - 200


def test_a_target_too_small_for_the_task_is_a_config_error(chat_tokenizer: Any) -> None:
    with pytest.raises(ConfigError, match="no room"):
        generate_rows("niah_single_1", 128, 1, seed=42, tokenizer=chat_tokenizer)


def test_load_caches_rows_on_disk(
    chat_tokenizer: Any, synthetic_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = RulerSynthetic(
        ["vt", "fwe"], context_lengths=[1024, 2048], num_samples=2, tokenizer=chat_tokenizer
    )
    first = bench.load_samples()
    assert len(first) == 8 and set(first["subset"]) == {"vt", "fwe"}
    assert sorted(first["context_length"].unique()) == [1024, 2048]
    assert first["sample_id"].tolist()[:3] == ["vt:1024:0", "vt:1024:1", "vt:2048:0"]
    assert all(isinstance(a, list) and all(isinstance(x, str) for x in a) for a in first["answers"])
    assert len(list(synthetic_cache.glob("*.json"))) == 4

    def no_generation(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("cache miss")

    monkeypatch.setattr(ruler_synthetic, "generate_rows", no_generation)
    again = RulerSynthetic(
        ["vt", "fwe"], context_lengths=[1024, 2048], num_samples=2, tokenizer=chat_tokenizer
    )
    pd.testing.assert_frame_equal(again.load_samples(), first)

    # anything that changes the rows changes the key
    for options in ({"num_samples": 3}, {"seed": 1}, {"template_overhead": 10}):
        changed = RulerSynthetic(
            ["vt"],
            context_lengths=[1024],
            **{"num_samples": 2, **options},
            tokenizer=chat_tokenizer,
        )  # type: ignore[arg-type]
        with pytest.raises(DatasetLoadError, match="cache miss"):
            changed.load_samples()


def test_an_unreadable_cache_file_is_regenerated(
    chat_tokenizer: Any, synthetic_cache: Path
) -> None:
    bench = RulerSynthetic(
        ["niah_single_1"], context_lengths=[1024], num_samples=1, tokenizer=chat_tokenizer
    )
    path = bench.cache_path("niah_single_1", 1024)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    rows = bench.load_samples()
    assert rows["sample_id"].tolist() == ["niah_single_1:1024:0"]
    assert json.loads(path.read_text())[0]["sample_id"] == "niah_single_1:1024:0"


def test_scoring_and_aggregation_by_hand() -> None:
    frame = pd.DataFrame(
        {
            "task": ["niah_multivalue", "niah_multivalue", "cwe", "niah_multivalue", "cwe"],
            "context_length": [1024, 1024, 1024, 2048, 2048],
            "answers": [["111", "222", "333", "444"], ["5"], ["apple", "pear"], ["9"], ["fig"]],
            "prediction": [
                " 111, 333 and\x00444 ",  # 3 of 4 found (control char -> newline)
                "nothing",  # 0
                "APPLE, Pear",  # 2 of 2, case-insensitive
                "9",  # 1
                "figs",  # substring counts: 1
            ],
        },
        index=[10, 11, 12, 13, 14],
    )
    bench = RulerSynthetic()
    metrics = bench.post_run_evaluate(frame)
    assert bench.last_scored["score"].to_dict() == {10: 0.75, 11: 0.0, 12: 1.0, 13: 1.0, 14: 1.0}
    assert bench.last_scored.loc[10, "prediction"] == " 111, 333 and\x00444 "  # saved text kept
    by_length = metrics["buckets"]["by_length"]
    assert by_length == {
        "1024": {"niah_multivalue": pytest.approx(37.5), "cwe": pytest.approx(100.0)},
        "2048": {"niah_multivalue": pytest.approx(100.0), "cwe": pytest.approx(100.0)},
    }
    assert metrics["buckets"]["length_mean"] == {
        "1024": pytest.approx(68.75),
        "2048": pytest.approx(100.0),
    }
    assert metrics["tasks"]["niah_multivalue"] == {"score": pytest.approx(68.75), "n_scored": 3}
    assert metrics["tasks"]["cwe"] == {"score": pytest.approx(100.0), "n_scored": 2}
    assert metrics["overall"] == pytest.approx((68.75 + 100.0) / 2)
    assert metrics["scale"] == "0-100" and metrics["benchmark"] == "ruler_synthetic"


def test_end_to_end_with_the_adapters_tokenizer(
    chat_tokenizer: Any, synthetic_cache: Path, tmp_path: Path
) -> None:
    bench = create_benchmark_instance(
        "ruler_synthetic", ["niah_single_1", "cwe"], context_lengths=[1024], num_samples=2
    )
    truth = {
        row["context"]: (row["sample_id"], row["answers"])
        for row in RulerSynthetic(
            ["niah_single_1", "cwe"],
            context_lengths=[1024],
            num_samples=2,
            tokenizer=chat_tokenizer,
        )
        .load_samples()
        .to_dict("records")
    }

    def answer(context: str, question: str) -> str:
        sample_id, answers = truth[context]
        return "I do not know" if sample_id.endswith(":1") else " ".join(answers)

    adapter = TokenizerAdapter(chat_tokenizer, answer_fn=answer)
    metrics = bench.run_benchmark(adapter, tmp_path / "run")
    assert bench.options()["tokenizer"] == chat_tokenizer.name_or_path
    assert metrics["tasks"]["niah_single_1"]["score"] == pytest.approx(50.0)
    assert metrics["tasks"]["cwe"]["n_available"] == 2
    assert metrics["overall"] == pytest.approx(50.0)
    assert len(adapter.calls) == 4 and adapter.calls[0]["generation_kwargs"] == {
        "max_new_tokens": 128
    }


class WordTokenizer:
    """Counts whitespace-separated words: a second, very different tokenizer."""

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        return {"input_ids": [text.split() for text in texts]}


def test_a_new_models_tokenizer_resizes_the_rows(
    chat_tokenizer: Any, synthetic_cache: Path, tmp_path: Path
) -> None:
    bench = create_benchmark_instance(
        "ruler_synthetic", ["niah_single_1"], context_lengths=[512], num_samples=1
    )
    bench.run_benchmark(TokenizerAdapter(chat_tokenizer, default="x"), tmp_path / "chat")
    chat_row = bench.load_samples().iloc[0]
    bench.run_benchmark(TokenizerAdapter(WordTokenizer(), default="x"), tmp_path / "words")
    word_row = bench.load_samples().iloc[0]
    text = f"{word_row['context']}{word_row['question']} {word_row['answer_prefix']}"
    assert word_row["length"] == len(text.split()) <= 512 - 128  # sized in words now
    assert word_row["context"] != chat_row["context"]
    assert bench.options()["tokenizer"] == "WordTokenizer"


def test_without_any_tokenizer_loading_fails_clearly(synthetic_cache: Path, tmp_path: Path) -> None:
    bench = create_benchmark_instance(
        "ruler_synthetic", ["vt"], context_lengths=[1024], num_samples=1
    )
    with pytest.raises(ConfigError, match="needs a tokenizer"):  # a config error: never retried
        bench.run_benchmark(ScriptedAdapter(), tmp_path)


def test_aggregation_of_nothing_is_null_not_a_division_by_zero() -> None:
    empty = pd.DataFrame({"task": [], "context_length": [], "score": []})
    metrics = RulerSynthetic().aggregate(empty)
    assert metrics["overall"] is None and metrics["tasks"] == {}
    unscored = pd.DataFrame({"task": ["vt"], "context_length": [4096], "score": [float("nan")]})
    metrics = RulerSynthetic().aggregate(unscored)
    assert metrics["buckets"]["by_length"] == {"4096": {"vt": None}}
    assert metrics["buckets"]["by_length_n"] == {"4096": {"vt": 0}}
    assert metrics["tasks"]["vt"] == {"score": None, "n_scored": 0}
    assert metrics["overall"] is None
