"""Rows for the Chinese LongBench tasks, built from original THUDM/LongBench records.

`Xnhyacinth/LongBench` holds only the English tasks, so `multifieldqa_zh`, `dureader`, `vcsum`,
`lsht` and `passage_retrieval_zh` are built here from records with fields `input, context,
answers, length, all_classes, _id` (docs/benchmarks.md §1). Each official `dataset2prompt`
template is split into a context part (instruction, `{context}` and the fixed text after it), a
question part (`{input}` with its label) and the answer prefix that starts the assistant turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class PromptSplit:
    """One task's template in three parts; `cue` is an answer cue that ends `input` itself."""

    context: str
    question: str
    answer_prefix: str
    cue: str = ""


CHINESE_PROMPTS: dict[str, PromptSplit] = {
    "multifieldqa_zh": PromptSplit(
        context="阅读以下文字并用中文简短回答：\n\n{context}\n\n"
        "现在请基于上面的文章回答下面的问题，只告诉我答案，不要输出任何其他字词。\n\n",
        question="问题：{input}\n",
        answer_prefix="回答：",
    ),
    "dureader": PromptSplit(
        context="请基于给定的文章回答下述问题。\n\n文章：{context}\n\n请基于上述文章回答下面的问题。\n\n",
        question="问题：{input}\n",
        answer_prefix="回答：",
    ),
    "vcsum": PromptSplit(
        context="下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n",
        question="",
        answer_prefix="会议总结：",
    ),
    "lsht": PromptSplit(
        context="请判断给定新闻的类别，下面是一些例子。\n\n{context}\n",
        question="{input}",
        answer_prefix="",
        cue="类别：",
    ),
    "passage_retrieval_zh": PromptSplit(
        context="以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n"
        "{context}\n\n下面是一个摘要\n\n",
        question='{input}\n\n请输入摘要所属段落的编号。答案格式必须是"段落1"，"段落2"等格式\n\n',
        answer_prefix="答案是：",
    ),
}


def split_cue(text: str, cue: str) -> tuple[str, str]:
    """`(text without a trailing cue, the cue)`, or `(text, "")` when it does not end with it."""
    if cue and text.endswith(cue):
        return text[: -len(cue)], cue
    return text, ""


def build_rows(records: pd.DataFrame, task: str, max_new_tokens: int) -> pd.DataFrame:
    """Original records -> rows in the hub schema (`context, question, answer_prefix, ...`)."""
    prompt = CHINESE_PROMPTS[task]
    contexts, questions, prefixes = [], [], []
    for context, text in zip(records["context"], records["input"], strict=True):
        question = prompt.question.format(input=text)
        prefix = prompt.answer_prefix
        if prompt.cue:
            question, prefix = split_cue(question, prompt.cue)
        contexts.append(prompt.context.format(context=context))
        questions.append(question)
        prefixes.append(prefix)
    rows = records.drop(columns=["input"]).copy()
    rows["context"] = contexts
    rows["question"] = questions
    rows["answer_prefix"] = prefixes
    rows["max_new_tokens"] = max_new_tokens
    return rows
