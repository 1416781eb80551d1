"""Pure statistics on timings: the median ratio and the spread every verify cost is quoted with."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def ratio_summary(times: Sequence[float], base: Sequence[float]) -> tuple[float, float]:
    """Median and interquartile range of the per-round ratios times[i] / base[i] (interleaved timings taken moments
    apart): the verify cost T(n)/T(1) as labkit quotes it, for its own forward and for a server's."""
    ratios = [a / b for a, b in zip(times, base, strict=True)]
    return statistics.median(ratios), iqr(ratios)


def iqr(xs: Sequence[float]) -> float:
    """Interquartile range (the full range for fewer than 4 values): the spread a timing is quoted with."""
    if len(xs) < 4:
        return max(xs) - min(xs)
    q = statistics.quantiles(xs, n=4)
    return q[2] - q[0]
