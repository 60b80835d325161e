"""Seeds in `slidemap report`: the statistics by hand, a sweep of several seeds per cell as mean +- interval,
summary.csv, the best mark only where intervals separate, and error bars on Figs. 10 and 11."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from slidemap.reporting.figures import figure_data
from slidemap.reporting.report import write_report
from slidemap.reporting.stats import (CONTRADICTED, INCONCLUSIVE, SUPPORTED, Interval, paired_differences,
                                      separated, t_interval, verdict, welch_interval)
from slidemap.reporting.sweep import scan_sweep
from slidemap.reporting.tables import SUMMARY_COLUMNS

T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445}
"""Student's t, 97.5% quantile, by degrees of freedom (printed tables)."""


def test_t_interval_by_hand() -> None:
    ci = t_interval([0.70, 0.80, 0.90])
    assert ci.n == 3 and ci.mean == pytest.approx(0.80) and ci.sd == pytest.approx(0.10)
    half = 4.302653 * 0.10 / math.sqrt(3)  # 0.248414...
    assert half == pytest.approx(0.248414, abs=1e-6)
    assert ci.half_width == pytest.approx(half, rel=1e-6)
    assert (ci.low, ci.high) == pytest.approx((0.80 - half, 0.80 + half), rel=1e-6)
    two = t_interval([0.5, 0.7])  # sd = 0.1 * sqrt(2), df 1
    assert two.sd == pytest.approx(math.sqrt(0.02))
    assert two.half_width == pytest.approx(T975[1] * math.sqrt(0.02) / math.sqrt(2), rel=1e-6)


def test_a_single_run_has_no_interval() -> None:
    one = t_interval([0.6])
    assert one.n == 1 and one.mean == 0.6 and not one.has_interval
    assert math.isnan(one.sd) and math.isnan(one.low) and math.isnan(one.high)
    assert t_interval([]).n == 0 and math.isnan(t_interval([]).mean)
    assert t_interval([0.4, float("nan"), 0.6]).n == 2  # a NaN is no value
    assert not separated(Interval(1, 0.9), t_interval([0.1, 0.2]))


def test_welch_interval_by_hand() -> None:
    # equal variances (1/3 each, n = 3): se = sqrt(2/3), Welch-Satterthwaite df = 2 * (3 - 1) = 4
    d = welch_interval([1.0, 2.0, 3.0], [5.0, 6.0, 7.0])
    assert d.n == 6 and d.mean == pytest.approx(-4.0)
    assert d.half_width == pytest.approx(T975[4] * math.sqrt(2 / 3), rel=1e-6)
    # unequal: var 1 (n 3) vs var 2 (n 2): va = 1/3, vb = 1, df = (4/3)^2 / ((1/3)^2 / 2 + 1) = 32/19
    from scipy.stats import t

    u = welch_interval([1.0, 2.0, 3.0], [4.0, 6.0])
    assert u.mean == pytest.approx(-3.0)
    assert u.half_width == pytest.approx(t.ppf(0.975, 32 / 19) * math.sqrt(4 / 3), rel=1e-6)
    assert not welch_interval([1.0], [2.0, 3.0]).has_interval


def test_paired_differences_and_verdicts() -> None:
    a = {("china", 64, 0): 0.8, ("china", 64, 1): 0.7, ("japan", 64, 0): 0.5}
    b = {("china", 64, 1): 0.6, ("china", 64, 0): 0.75, ("taiwan", 64, 0): 0.1}
    assert paired_differences(a, b) == pytest.approx([0.05, 0.1])
    above, across, below = Interval(3, 2.0, 1.0, 0.5, 3.5), Interval(3, 1.0, 1.0, -0.5, 2.5), Interval(3, -2, 1, -3, -1)
    assert [verdict(i) for i in (above, across, below)] == [SUPPORTED, INCONCLUSIVE, CONTRADICTED]
    assert [verdict(i, side=-1) for i in (above, across, below)] == [CONTRADICTED, INCONCLUSIVE, SUPPORTED]
    assert verdict(Interval(1, 5.0)) == INCONCLUSIVE  # no interval: never supported
    assert verdict(Interval(4, 1.0, 1.0, 0.0, 2.0)) == INCONCLUSIVE  # touching 0 is not entirely above it
