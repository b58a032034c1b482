"""Rows -> requests: grouping key and order, and `max_requests` limiting whole groups."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparse_attention_hub.benchmark.grouping import RequestGroup, group_requests, limit_groups
from sparse_attention_hub.errors import ConfigError


def frame(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    """(subset, context, answer_prefix, max_new_tokens) per row, index 10, 11, ..."""
    return pd.DataFrame(
        rows, columns=["subset", "context", "answer_prefix", "max_new_tokens"]
    ).set_axis(range(10, 10 + len(rows)))


def test_groups_follow_first_appearance_and_keep_row_order() -> None:
    samples = frame(
        [
            ("s", "B", "p", 8),
            ("s", "A", "p", 8),
            ("s", "B", "p", 8),
            ("s", "A", "p", 8),
            ("s", "C", "p", 8),
        ]
    )
    groups = group_requests(samples)
    assert [(g.context, g.row_indices) for g in groups] == [
        ("B", (10, 12)),
        ("A", (11, 13)),
        ("C", (14,)),
    ]


def test_same_context_splits_on_prefix_cap_and_subset() -> None:
    samples = frame(
        [
            ("s", "A", "0shot:", 128),
            ("s", "A", "cot:", 1024),
            ("s", "A", "0shot:", 64),
            ("t", "A", "0shot:", 128),
            ("s", "A", "0shot:", 128),
        ]
    )
    groups = group_requests(samples)
    assert [(g.subset, g.answer_prefix, g.max_new_tokens, g.row_indices) for g in groups] == [
        ("s", "0shot:", 128, (10, 14)),
        ("s", "cot:", 1024, (11,)),
        ("s", "0shot:", 64, (12,)),
        ("t", "0shot:", 128, (13,)),
    ]


def test_task_column_stands_in_for_a_missing_subset_column() -> None:
    samples = frame([("x", "A", "", 4), ("y", "A", "", 4)]).rename(columns={"subset": "task"})
    assert [g.subset for g in group_requests(samples)] == ["x", "y"]


def group(subset: str, size: int, start: int) -> RequestGroup:
    return RequestGroup(subset, f"{subset}{start}", "", 8, tuple(range(start, start + size)))


def test_limit_keeps_whole_groups_per_subset_in_order() -> None:
    groups = [group("a", 2, 0), group("b", 3, 2), group("a", 2, 5), group("a", 1, 7)]
    kept = limit_groups(groups, 3)
    # subset a: 2 fits, 2 more would make 4 > 3 -> stop (the later 1-group is not pulled forward)
    # subset b: its only group (3) fits exactly
    assert kept == [groups[0], groups[1]]
    assert limit_groups(groups, 5) == groups


def test_limit_always_keeps_one_group_even_when_it_is_too_big() -> None:
    groups = [group("a", 4, 0), group("a", 1, 4), group("b", 1, 5)]
    assert limit_groups(groups, 2) == [groups[0], groups[2]]


def test_no_limit_returns_everything() -> None:
    groups = [group("a", 4, 0), group("b", 1, 4)]
    assert limit_groups(groups, None) == groups


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "3"])
def test_invalid_limits_raise(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_requests"):
        limit_groups([group("a", 1, 0)], bad)  # type: ignore[arg-type]


@given(
    sizes=st.lists(st.tuples(st.sampled_from("ab"), st.integers(1, 5)), min_size=1, max_size=12),
    limit=st.integers(1, 12),
)
def test_limit_takes_the_longest_fitting_prefix_per_subset(
    sizes: list[tuple[str, int]], limit: int
) -> None:
    groups, start = [], 0
    for subset, size in sizes:
        groups.append(group(subset, size, start))
        start += size
    kept = limit_groups(groups, limit)
    assert kept == [g for g in groups if g in kept]  # dataset order preserved
    for subset in {s for s, _ in sizes}:
        mine = [g for g in groups if g.subset == subset]
        taken = [g for g in kept if g.subset == subset]
        assert taken == mine[: len(taken)]  # a prefix: no group skipped
        total = sum(len(g.row_indices) for g in taken)
        assert len(taken) >= 1
        assert total <= limit or len(taken) == 1
        if len(taken) < len(mine):
            assert total + len(mine[len(taken)].row_indices) > limit
