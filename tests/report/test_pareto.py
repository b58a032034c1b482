"""The Pareto front: nothing on it is dominated, everything off it is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparse_attention_hub.report.pareto import pareto_front

points = st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 100.0)), min_size=1, max_size=12)


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] >= b[1] and a != b


@given(points)
def test_front_is_exactly_the_undominated_points(pairs: list[tuple[float, float]]) -> None:
    front = pareto_front([d for d, _ in pairs], [s for _, s in pairs])
    for i, point in enumerate(pairs):
        assert front[i] == (not any(dominates(other, point) for other in pairs))
    assert any(front)  # a non-empty set always has an undominated point


def test_example_and_ties() -> None:
    density = [1.0, 0.25, 0.1, 0.25, 0.5]
    score = [80.0, 60.0, 10.0, 60.0, 55.0]
    assert pareto_front(density, score) == [True, True, True, True, False]
    with pytest.raises(ValueError, match="density has 1 values but score has 2"):
        pareto_front([0.1], [1.0, 2.0])
