"""Which configs are on the accuracy/density Pareto front (fewer keys read, higher score).

A point is on the front when no other point reads at most as many keys and scores at least as
well, with one of the two strictly better. Ties (same density and score) are all on the front.
"""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(density: Sequence[float], score: Sequence[float]) -> list[bool]:
    """For each (density, score) pair: True if it is not dominated by another pair."""
    if len(density) != len(score):
        raise ValueError(f"density has {len(density)} values but score has {len(score)}")
    points = list(zip(density, score, strict=True))
    return [
        not any(
            d <= d0 and s >= s0 and (d < d0 or s > s0) for j, (d, s) in enumerate(points) if j != i
        )
        for i, (d0, s0) in enumerate(points)
    ]
