"""Confidence intervals over seeds and the verdict on a claim.

With n seeds x_1..x_n, the 95% interval of the mean is mean +- t_{0.975, n-1} * s / sqrt(n),
s the sample standard deviation (ddof 1). A claim's contrast is computed per seed first, so the
interval of a difference between rows is paired by seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Interval:
    """Mean of n values with the half-width of its two-sided t-interval (NaN when n < 2)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and t-interval half-width of ``values`` (NaN values are an error, not dropped)."""
    x = np.asarray(list(values), dtype=float)
    if np.isnan(x).any():
        raise ValueError("t_interval: values contain NaN")
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    if n == 1:
        return Interval(float(x[0]), math.nan, 1)
    quantile = stats.t.ppf(0.5 + confidence / 2, df=n - 1)
    return Interval(float(x.mean()), float(quantile * x.std(ddof=1) / math.sqrt(n)), n)


def verdict(interval: Interval, direction: str, margin: float = 0.0) -> str:
    """Verdict on "contrast <direction> 0" (``">"``, ``"<"``) or "|contrast| < margin" (``"equivalent"``).

    reproduced: the interval lies wholly on the claimed side (inside the margin band for
    equivalence); not reproduced: wholly on the other side (outside the band); otherwise
    inconclusive. One seed gives no interval: "inconclusive (1 seed)".
    """
    if interval.n == 0:
        return f"{INCONCLUSIVE} (no runs)"
    if interval.n == 1:
        return f"{INCONCLUSIVE} (1 seed)"
    low, high = interval.low, interval.high
    if direction == ">":
        return REPRODUCED if low > 0 else NOT_REPRODUCED if high < 0 else INCONCLUSIVE
    if direction == "<":
        return REPRODUCED if high < 0 else NOT_REPRODUCED if low > 0 else INCONCLUSIVE
    if direction == "equivalent":
        if -margin < low and high < margin:
            return REPRODUCED
        if low >= margin or high <= -margin:
            return NOT_REPRODUCED
        return INCONCLUSIVE
    raise ValueError(f"unknown claim direction {direction!r}")
