"""LongBench: official metrics (with their quirks), row building, `_e` buckets, end to end."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from sparse_attention_hub.adapters.scripted import ScriptedAdapter
from sparse_attention_hub.benchmark._longbench_metrics import (
    classification_score,
    code_sim_score,
    count_score,
    retrieval_score,
    retrieval_zh_score,
)
from sparse_attention_hub.benchmark._longbench_prompts import CHINESE_PROMPTS, build_rows
from sparse_attention_hub.benchmark.longbench import (
    EXTENDED,
    TASKS,
    LongBench,
    base_task,
    length_bucket,
    score_sample,
)
from sparse_attention_hub.benchmark.results_io import read_raw_results
from sparse_attention_hub.errors import DatasetLoadError, UnknownNameError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "longbench"


# ----- metrics ------------------------------------------------------------------------------
def test_classification_one_over_number_of_matched_classes() -> None:
    classes = ["City", "Country", "Date"]
    assert classification_score("City", "City", classes) == 1.0
    assert classification_score("City or Country", "City", classes) == 0.5
    assert classification_score("Country", "City", classes) == 0.0
    assert classification_score("", "City", classes) == 0.0
    with pytest.raises(ValueError, match="all_classes"):  # missing classes: an error, not a 0
        classification_score("City", "City", [])


def test_classification_drops_class_names_inside_the_true_class() -> None:
    # "LOC" is a substring of the true class "LOC:city" and is removed from `matched`
    assert classification_score("LOC:city", "LOC:city", ["LOC", "LOC:city", "NUM"]) == 1.0


def test_classification_keeps_the_official_remove_while_iterating_skip() -> None:
    # matched = [a, ab, abc]; "a" is removed, so "ab" slides into its slot and is never checked:
    # matched ends as [ab, abc] -> 1/2 (a loop that examined every element would give 1).
    assert classification_score("abc", "abc", ["a", "ab", "abc"]) == 0.5
    # [ab, a, abc]: "ab" removed, "a" skipped -> [a, abc] -> 1/2
    assert classification_score("abc", "abc", ["ab", "a", "abc"]) == 0.5
    # [ab, abc, a]: "ab" removed, "abc" skipped (kept anyway), "a" removed -> [abc] -> 1
    assert classification_score("abc", "abc", ["ab", "abc", "a"]) == 1.0
    assert classification_score("abc", "abc", ["abc", "ab"]) == 1.0


def test_retrieval_is_the_share_of_numbers_equal_to_the_paragraph_id() -> None:
    assert retrieval_score("Paragraph 2", "Paragraph 2", []) == 1.0
    assert retrieval_score("Paragraph 2, not 12 or 3", "Paragraph 2", []) == pytest.approx(1 / 3)
    assert retrieval_score("I do not know", "Paragraph 2", []) == 0.0
    assert retrieval_zh_score("答案是段落2和段落3", "段落2", []) == 0.5
    with pytest.raises(ValueError, match="no paragraph id"):
        retrieval_score("Paragraph 2", "the second one", [])


def test_count_compares_integer_strings() -> None:
    assert count_score("There are 5 unique paragraphs out of 7", "5", []) == 0.5
    assert count_score("05", "5", []) == 0.0  # string comparison, as the official scorer
    assert count_score("five", "5", []) == 0.0


def test_code_sim_takes_the_first_line_without_comment_or_markdown() -> None:
    prediction = "\n# finish the loop\n```python\n    return total\n```"
    assert code_sim_score(prediction, "    return total", []) == 1.0
    # a line with a trailing comment is skipped too; "x = 1" vs "x = 2": 2 * 4 / 10 -> 80
    assert code_sim_score("y = 0  # tmp\n// js\nx = 1", "x = 2", []) == 0.8
    assert code_sim_score("# only\n# comments", "x = 2", []) == 0.0
    assert code_sim_score("", "x = 2", []) == 0.0


def test_first_line_rule_for_few_shot_tasks_only() -> None:
    assert score_sample("trec", "\n\nCity\nCountry", ["City"], ["City", "Country"]) == 1.0
    # only newlines are stripped: the first line is " " and holds no class
    assert score_sample("trec", " \nCity", ["City"], ["City", "Country"]) == 0.0
    # narrativeqa scores the whole text: [mara, foo] vs [mara] -> 2/3
    assert score_sample("narrativeqa", "\nMara\nfoo", ["Mara"], []) == pytest.approx(2 / 3)


def test_score_is_the_max_over_ground_truths_and_zero_without_any() -> None:
    answers = ["Sunday", "every Sunday morning"]
    assert score_sample("narrativeqa", "every Sunday", answers, []) == pytest.approx(0.8)
    assert score_sample("narrativeqa", "Sunday", [], []) == 0.0


def test_chinese_metrics() -> None:
    assert score_sample("multifieldqa_zh", "1958年", ["1958年"], []) == 1.0
    # jieba: 我/爱/北京/天安门 vs 北京/天安门 -> P = 1/2, R = 1
    assert score_sample("dureader", "我爱北京天安门", ["北京天安门"], []) == pytest.approx(
        2 / 3, rel=1e-7
    )
    assert score_sample("lsht", "\n科技\n体育", ["科技"], ["体育", "科技"]) == 1.0
    assert score_sample("passage_retrieval_zh", "段落2", ["段落2"], []) == 1.0


@pytest.mark.parametrize("subset", EXTENDED)
def test_every_extended_subset_scores_with_its_base_metric(subset: str) -> None:
    assert subset.endswith("_e") and base_task(subset) in TASKS
    rows = LongBench([subset], data_path=FIXTURES).load_subset(subset)
    row = rows.iloc[0]
    gold = row["answers"][0]
    for prediction in (gold, "", "Paragraph 7 # 3 City"):
        expected = score_sample(
            base_task(subset), prediction, row["answers"], row["all_classes"] or []
        )
        assert (
            score_sample(subset, prediction, row["answers"], row["all_classes"] or []) == expected
        )
    assert score_sample(subset, gold, row["answers"], row["all_classes"] or []) == pytest.approx(
        1.0
    )


@pytest.mark.parametrize(
    ("length", "bucket"),
    [(0, "0-4k"), (3999, "0-4k"), (4000, "4-8k"), (7999, "4-8k"), (8000, "8k+")],
)
def test_length_buckets(length: int, bucket: str) -> None:
    assert length_bucket(length) == bucket


# ----- loading ------------------------------------------------------------------------------
def test_chinese_rows_are_built_with_the_official_prompt_split() -> None:
    bench = LongBench(["vcsum", "lsht", "multifieldqa_zh"], data_path=FIXTURES)
    vcsum = bench.load_subset("vcsum").iloc[0]
    assert vcsum["context"] == (
        "下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n"
        "主持人：今天讨论新产品的定价。\n经理：建议定价九十九元。\n财务：同意。\n\n"
    )
    assert (vcsum["question"], vcsum["answer_prefix"], vcsum["max_new_tokens"]) == (
        "",
        "会议总结：",
        532,
    )
    lsht = bench.load_subset("lsht").iloc[0]
    assert lsht["question"] == "新闻：新型无人机完成首飞。\n"
    assert lsht["answer_prefix"] == "类别："
    assert lsht["all_classes"] == ["体育", "财经", "军事", "科技", "娱乐", "教育"]
    mf = bench.load_subset("multifieldqa_zh").iloc[1]
    assert mf["question"] == "问题：李华的公司主营什么？\n"
    assert (mf["answer_prefix"], mf["max_new_tokens"], mf["sample_id"]) == (
        "回答：",
        84,
        "multifieldqa_zh-0001",
    )


# THUDM/LongBench config/dataset2prompt.json and dataset2maxlen.json (the official values).
OFFICIAL_ZH_PROMPTS = {
    "multifieldqa_zh": "阅读以下文字并用中文简短回答：\n\n{context}\n\n现在请基于上面的文章回答下面的问题，"
    "只告诉我答案，不要输出任何其他字词。\n\n问题：{input}\n回答：",
    "dureader": "请基于给定的文章回答下述问题。\n\n文章：{context}\n\n请基于上述文章回答下面的问题。"
    "\n\n问题：{input}\n回答：",
    "vcsum": "下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n会议总结：",
    "lsht": "请判断给定新闻的类别，下面是一些例子。\n\n{context}\n{input}",
    "passage_retrieval_zh": "以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n{context}"
    '\n\n下面是一个摘要\n\n{input}\n\n请输入摘要所属段落的编号。答案格式必须是"段落1"，"段落2"等格式\n\n答案是：',
}
OFFICIAL_MAXLEN = {
    "narrativeqa": 128, "qasper": 128, "multifieldqa_en": 64, "multifieldqa_zh": 64,
    "hotpotqa": 32, "2wikimqa": 32, "musique": 32, "dureader": 128, "gov_report": 512,
    "qmsum": 512, "multi_news": 512, "vcsum": 512, "trec": 64, "triviaqa": 32, "samsum": 128,
    "lsht": 64, "passage_count": 32, "passage_retrieval_en": 32, "passage_retrieval_zh": 32,
    "lcc": 64, "repobench-p": 64,
}  # fmt: skip


@pytest.mark.parametrize("task", sorted(OFFICIAL_ZH_PROMPTS))
def test_chinese_prompt_parts_join_into_the_official_template(task: str) -> None:
    """The split template, filled and joined as the model sees it, is the official prompt."""
    records = pd.DataFrame(
        {"input": ["新闻：一条消息。\n类别："], "context": ["正文"], "length": [4], "_id": ["x"]}
    )
    row = build_rows(records, task, 0).iloc[0]
    official = OFFICIAL_ZH_PROMPTS[task].format(context="正文", input="新闻：一条消息。\n类别：")
    assert row["context"] + row["question"] + row["answer_prefix"] == official
    # the document sits in the context part and the question text outside it
    assert "正文" in row["context"] and "一条消息" not in row["context"]
    assert ("一条消息" in row["question"]) == (task != "vcsum")  # vcsum has no {input}


def test_caps_are_the_official_lengths_plus_twenty() -> None:
    assert {task: info.official_max_new_tokens for task, info in TASKS.items()} == OFFICIAL_MAXLEN
    rows = LongBench(list(CHINESE_PROMPTS), data_path=FIXTURES).load_samples()
    for task, cap in zip(rows["task"], rows["max_new_tokens"], strict=True):
        assert cap == OFFICIAL_MAXLEN[task] + 20, task


def test_chinese_rows_from_the_hub_archive_equal_the_local_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(FIXTURES / "vcsum.jsonl", "data/vcsum.jsonl")
    fetched: list[tuple[str, str]] = []

    def fake_download(repo_id: str, filename: str, repo_type: str) -> str:
        fetched.append((repo_id, filename))
        return str(archive)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    from_hub = LongBench(["vcsum"]).load_subset("vcsum")
    assert fetched == [("THUDM/LongBench", "data.zip")]
    local = LongBench(["vcsum"], data_path=FIXTURES).load_subset("vcsum")
    pd.testing.assert_frame_equal(from_hub, local)
    with pytest.raises(DatasetLoadError, match=r"'dureader'.*data/dureader\.jsonl.*KeyError"):
        LongBench(["dureader"]).load_samples()  # not in this archive


def test_a_subset_that_fails_to_load_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetLoadError, match=r"lsht\.jsonl"):
        LongBench(["lsht"], data_path=tmp_path).load_samples()  # no file for it
    row = {"context": "c", "question": "q", "answers": ["a"], "max_new_tokens": 84}
    (tmp_path / "trec.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DatasetLoadError, match=r"subset 'trec'.*KeyError: 'length'"):
        LongBench(["trec"], data_path=tmp_path).load_samples()


def test_extended_rows_get_their_own_task_name() -> None:
    rows = LongBench(["trec_e"], data_path=FIXTURES).load_subset("trec_e")
    assert set(rows["task"]) == {"trec_e"}  # the hub column says "trec"
    assert rows["length"].tolist() == [1500, 5200, 9100]


def test_parquet_arrays_become_python_lists(tmp_path: Path) -> None:
    rows = LongBench(["trec"], data_path=FIXTURES / "parquet").load_subset("trec")
    for answers, classes in zip(rows["answers"], rows["all_classes"], strict=True):
        assert type(answers) is list and all(type(a) is str for a in answers)
        assert type(classes) is list and "City" in classes
    assert score_sample("trec", "City", rows.iloc[0]["answers"], rows.iloc[0]["all_classes"]) == 1.0
    no_classes = LongBench(["qasper"], data_path=FIXTURES).load_subset("qasper")
    assert no_classes["all_classes"].tolist() == [None, None, None]


def test_unknown_subset_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="qasper_e"):
        LongBench(["qasper_x"])


# ----- aggregation --------------------------------------------------------------------------
def _scored(rows: list[tuple[str, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": [t for t, _, _ in rows],
            "score": [s for _, s, _ in rows],
            "length_bucket": [length_bucket(n) for _, _, n in rows],
        }
    )


def test_aggregate_separates_extended_buckets_and_leaves_empty_ones_null() -> None:
    scored = _scored(
        [("qasper", 1.0, 100), ("lcc", 0.5, 100), ("lcc_e", 1.0, 10), ("lcc_e", 0.0, 20)]
    )
    metrics = LongBench().aggregate(scored)
    assert metrics["overall"] == pytest.approx(75.0)
    assert set(metrics["tasks"]) == {"qasper", "lcc"}
    assert metrics["categories"]["Single-Doc QA"] == 100.0
    assert metrics["categories"]["Code"] == 50.0
    assert metrics["categories"]["Synthetic"] is None
    assert metrics["buckets"]["extended"]["lcc_e"] == {"0-4k": 50.0, "4-8k": None, "8k+": None}
    assert metrics["buckets"]["extended_n"]["lcc_e"] == {"0-4k": 2, "4-8k": 0, "8k+": 0}
    assert metrics["buckets"]["extended_mean"] == {"0-4k": 50.0, "4-8k": None, "8k+": None}


def test_a_raising_scorer_is_an_error_not_a_zero() -> None:
    results = pd.DataFrame(
        {
            "task": ["passage_retrieval_en", "passage_count"],
            "prediction": ["Paragraph 1", "3"],
            "answers": [["no id here"], ["3"]],
            "all_classes": [None, None],
            "length": [100, 100],
        }
    )
    metrics = LongBench().post_run_evaluate(results)
    assert metrics["errors"]["passage_retrieval_en"].startswith("ValueError")
    assert metrics["tasks"]["passage_retrieval_en"]["score"] is None
    assert metrics["overall"] == 100.0  # only passage_count, never a 0 for the failed task


# ----- end to end ---------------------------------------------------------------------------
def _prediction(subset: str, index: int, answers: list[str]) -> str:
    """Row 0 (and row 2): the gold answer in the form the task's rule accepts; row 1: empty."""
    if index == 1:
        return ""
    gold = answers[0]
    base = base_task(subset)
    if base in {"trec", "lsht", "samsum", "triviaqa"}:
        return f"\n{gold}\nand then some other text"
    if base in {"lcc", "repobench-p"}:
        return f"# completing the code\n{gold}"
    return gold


def test_end_to_end_all_34_subsets(tmp_path: Path) -> None:
    bench = LongBench(data_path=FIXTURES)
    samples = bench.load_samples()
    assert len(bench.subsets_to_run) == 34
    lookup: dict[tuple[str, str], str] = {}
    for subset, rows in samples.groupby("subset", sort=False):
        for i, (_, row) in enumerate(rows.iterrows()):
            key = (row["context"], row["question"])
            value = _prediction(str(subset), i, row["answers"])
            assert lookup.setdefault(key, value) == value
    adapter = ScriptedAdapter(answer_fn=lambda c, q: lookup[(c, q)])
    metrics = bench.run_benchmark(adapter, tmp_path, {"max_new_tokens": 48})

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["overall"] == pytest.approx(metrics["overall"])
    assert (saved["benchmark"], saved["scale"], saved["errors"]) == ("longbench", "0-100", {})
    tasks = saved["tasks"]
    assert set(tasks) == set(TASKS)
    n_rows = {"qasper": 3, "hotpotqa": 3}
    for task, entry in tasks.items():
        n = n_rows.get(task, 2)
        expected = 100.0 * (2 if n == 3 else 1) / n  # rows 0 and 2 right, row 1 empty
        assert entry["score"] == pytest.approx(expected, rel=1e-6), task
        assert entry["n_scored"] == n and entry["n_available"] == n
    assert saved["categories"]["Single-Doc QA"] == pytest.approx((200 / 3 + 50 * 3) / 4, rel=1e-6)
    assert saved["categories"]["Multi-Doc QA"] == pytest.approx((200 / 3 + 50 * 3) / 4, rel=1e-6)
    assert saved["categories"]["Code"] == pytest.approx(50.0)
    assert saved["overall"] == pytest.approx((200 / 3 * 2 + 50 * 19) / 21, rel=1e-6)

    extended = saved["buckets"]["extended"]
    assert set(extended) == set(EXTENDED)
    for subset in EXTENDED:
        if subset == "lcc_e":  # two rows, both under 4k: right + empty
            assert extended[subset] == {"0-4k": pytest.approx(50.0), "4-8k": None, "8k+": None}
        else:  # one row per bucket: right, empty, right
            assert extended[subset] == {
                "0-4k": pytest.approx(100.0, rel=1e-6),
                "4-8k": 0.0,
                "8k+": pytest.approx(100.0, rel=1e-6),
            }
    mean = saved["buckets"]["extended_mean"]
    assert mean["0-4k"] == pytest.approx((100 * 12 + 50) / 13, rel=1e-6)
    assert mean["4-8k"] == 0.0 and mean["8k+"] == pytest.approx(100.0, rel=1e-6)

    raw = read_raw_results(tmp_path / "raw_results.csv")
    assert len(raw) == len(samples) and raw["score"].between(0, 1).all()
    rescored = LongBench().post_run_evaluate(raw.drop(columns=["score", "length_bucket"]))
    assert rescored["overall"] == pytest.approx(saved["overall"])
    assert rescored["buckets"]["extended"] == extended
    assert set(raw["subset"]) == set(bench.all_datasets)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "difflib" in config["benchmark_options"]["scorers"]["fuzz_ratio"]
    assert config["generation_kwargs"] == {"max_new_tokens": 48}
    caps = {
        call["answer_prefix"]: call["generation_kwargs"]["max_new_tokens"] for call in adapter.calls
    }
    assert caps["会议总结："] == 48 and caps["Type:"] == 48  # min(user cap, row cap)
