"""`by_task` is `groupby("task", sort=False)` with a shortcut for one task: same tasks, same rows."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparse_attention_hub.benchmark.averages import by_task


def grouped(frame: pd.DataFrame) -> list[tuple[object, pd.DataFrame]]:
    return list(frame.groupby("task", sort=False))


def assert_same(frame: pd.DataFrame) -> None:
    mine, theirs = by_task(frame), grouped(frame)
    assert [task for task, _ in mine] == [task for task, _ in theirs]
    assert [type(task) for task, _ in mine] == [type(task) for task, _ in theirs]
    for (_, rows), (_, expected) in zip(mine, theirs, strict=True):
        pd.testing.assert_frame_equal(rows, expected)


@given(st.lists(st.sampled_from(["a", "b", None]), max_size=8))
def test_the_same_tasks_and_rows_as_groupby(tasks: list[str | None]) -> None:
    frame = pd.DataFrame({"task": tasks, "score": [float(i) for i in range(len(tasks))]})
    frame["task"] = frame["task"].astype("str" if all(tasks) else object)
    assert_same(frame)


@pytest.mark.parametrize("index", [[3, 1, 2], [0, 1, 2]])
def test_one_task_keeps_the_row_order_and_index(index: list[int]) -> None:
    frame = pd.DataFrame({"task": ["t"] * 3, "prediction": ["x", "y", "z"]}, index=index)
    assert_same(frame)


def test_one_tasks_rows_are_a_copy() -> None:
    frame = pd.DataFrame({"task": ["t", "t"], "score": [1.0, 0.0]})
    [(_, rows)] = by_task(frame)
    rows.loc[rows.index[0], "score"] = 5.0
    rows["extra"] = 1
    assert frame["score"].tolist() == [1.0, 0.0] and "extra" not in frame.columns
