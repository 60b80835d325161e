"""Statistics over seeds on plain lists: mean, sample sd, Student-t intervals, paired and Welch differences, verdicts.

Pure functions of numbers, so that every value the report prints can be checked by hand. A single run has no
spread: its interval is NaN, never a zero-width interval that would look certain.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from scipy.stats import t as student_t

LEVEL = 0.95
SUPPORTED, CONTRADICTED, INCONCLUSIVE, UNTESTABLE = "supported", "contradicted", "inconclusive", "untestable"
NAN = float("nan")


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided ``LEVEL`` interval; ``sd`` is the sample sd (ddof 1) of the values (for a Welch
    difference: its standard error). ``low``/``high``/``sd`` are NaN when fewer than two values give no spread."""

    n: int
    mean: float
    sd: float = NAN
    low: float = NAN
    high: float = NAN

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Student's t quantile of a two-sided ``level`` interval with ``df`` degrees of freedom."""
    return float(student_t.ppf(0.5 + level / 2, df))


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean +- t_{(1+level)/2, n-1} * sd / sqrt(n) of ``values`` (NaN values are left out)."""
    xs = [float(v) for v in values if not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return Interval(0, NAN)
    mean = math.fsum(xs) / n
    if n == 1:
        return Interval(1, mean)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


def bounded(interval: Interval, low: float = 0.0, high: float = 1.0) -> Interval:
    """The interval cut to the range its quantity can take (a fraction such as F1 lies in [0, 1]): with few seeds a
    t-interval of a score near 1 would otherwise promise values above 1. The mean and sd are unchanged."""
    if not interval.has_interval:
        return interval
    return Interval(interval.n, interval.mean, interval.sd, max(interval.low, low), min(interval.high, high))


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """mean(a) - mean(b) with a Welch interval (Welch-Satterthwaite degrees of freedom); ``n`` is len(a) + len(b).

    Needs two values on each side for an interval; with no spread on either side the interval is the point itself.
    """
    ia, ib = t_interval(a, level), t_interval(b, level)
    if ia.n == 0 or ib.n == 0:
        return Interval(ia.n + ib.n, NAN)
    diff = ia.mean - ib.mean
    if ia.n < 2 or ib.n < 2:
        return Interval(ia.n + ib.n, diff)
    va, vb = ia.sd ** 2 / ia.n, ib.sd ** 2 / ib.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(ia.n + ib.n, diff, 0.0, diff, diff)
    df = (va + vb) ** 2 / (va ** 2 / (ia.n - 1) + vb ** 2 / (ib.n - 1))
    half = t_quantile(df, level) * se
    return Interval(ia.n + ib.n, diff, se, diff - half, diff + half)


def paired_differences(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> list[float]:
    """a[k] - b[k] for every key both hold (same seed, same cell), in a's order."""
    return [a[k] - b[k] for k in a if k in b]


def verdict(interval: Interval, side: int = 1) -> str:
    """``supported`` when the interval lies entirely on the claimed ``side`` of 0 (+1: above, -1: below),
    ``contradicted`` when entirely on the other side, ``inconclusive`` otherwise (also when there is no interval)."""
    if not interval.has_interval:
        return INCONCLUSIVE
    low, high = (interval.low, interval.high) if side > 0 else (-interval.high, -interval.low)
    if low > 0:
        return SUPPORTED
    if high < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def separated(best: Interval, other: Interval) -> bool:
    """True when ``best``'s interval lies entirely above ``other``'s (both must have one)."""
    return best.has_interval and other.has_interval and best.low > other.high
