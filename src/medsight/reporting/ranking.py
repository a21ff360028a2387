"""Which cases a report shows: the best, the median and the worst of a ranked list."""
from __future__ import annotations


def best_median_worst(n: int) -> list[tuple[str, int]]:
    """``(rank, index)`` into a list of ``n`` items sorted best first: best, median, worst, each item once
    (with two items: best and worst)."""
    if n <= 0:
        return []
    picks = [("best", 0)] + ([("median", n // 2)] if n >= 3 else []) + ([("worst", n - 1)] if n >= 2 else [])
    return picks
