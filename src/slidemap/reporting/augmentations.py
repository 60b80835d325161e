"""The augmentation comparison's numbers (issue 17): per augmentation x model x scenario (x window, x input set) the
mean, own-site and transfer F1 over seeds with 95% t-intervals, and the paired difference from ``none``.

Pure functions of the run records :func:`~slidemap.reporting.sweep.scan_sweep` returns, so that augmentations.csv,
the report's section and ``benchmarks/augmentations.py`` print the same numbers, each checkable by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slidemap.reporting.stats import NAN, Interval, bounded, paired_differences, t_interval
from slidemap.reporting.sweep import (INPUTS_ORDER, MODEL_ORDER, NO_AUGMENT, SCENARIO_ORDER, mean_site_f1, ordered,
                                      own_site_f1, run_key, seed_of, transfer_f1)

AUGMENT_ORDER = (NO_AUGMENT, "d4", "offsets", "full")  # conf/augment: the paper's training first
METRICS = ("mean_f1", "own_site_f1", "transfer_f1")
STATS = ("mean", "sd", "ci_low", "ci_high")
DIFFS = ("pairs", "mean", "ci_low", "ci_high")
AUGMENT_COLUMNS = ("augment", "model", "scenario", "window", "inputs", "runs",
                   *(f"{m}_{s}" for m in METRICS for s in STATS),
                   *(f"{m}_minus_none_{s}" for m in METRICS for s in DIFFS))
"""augmentations.csv, one row per augmentation x model x scenario x window x un-augmented input set; fractions.

``runs``: the seeds of the row. ``mean_f1``: a run's mean F1 over its site test areas (pooled ``all`` left out);
``own_site_f1``: its F1 on the trained site's test area; ``transfer_f1``: its mean F1 on the other sites' test areas
(both empty for scenario ``all``). Each has the mean over seeds, the sample sd and the 95% t-interval cut to [0, 1]
(sd and interval empty with one seed). ``*_minus_none_*``: the row minus the ``none`` row of the same model,
scenario, window and input set, paired by seed: the number of pairs, the mean difference and its 95% t-interval
(empty without pairs, interval empty with one pair, always empty for ``none`` itself)."""

Values = dict[int, float]
"""One metric of one row: seed -> the mean of that seed's runs."""
GroupKey = tuple[str, str, str, int, str]
"""(augment, model, scenario, window, un-augmented input set)."""


def augment_of(run: dict[str, Any]) -> str:
    """The augmentation a run trained with (``none`` when not recorded: runs from before the augment group)."""
    return run_key(run)[3].partition("+")[2] or NO_AUGMENT


def inputs_of(run: dict[str, Any]) -> str:
    """The run's input set without its augmentation."""
    return run_key(run)[3].partition("+")[0]


RUN_VALUES: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "mean_f1": mean_site_f1, "own_site_f1": own_site_f1, "transfer_f1": transfer_f1}
"""Each metric's value for one run (reporting/sweep.py, shared with the claims); None where it has none."""


@dataclass(frozen=True)
class AugmentRow:
    """One augmentation x model x scenario x window x input set over its seeds."""

    augment: str
    model: str
    scenario: str
    window: int
    inputs: str
    seeds: tuple[int, ...]
    epochs: tuple[int, ...]
    values: dict[str, Values]  # metric -> per-seed value (seeds without a value left out)
    stats: dict[str, Interval]  # metric -> t-interval over seeds (not cut)
    diff: dict[str, Interval]  # metric -> paired difference from `none` (n = pairs; Interval(0, NaN) when none)

    @property
    def runs(self) -> int:
        return len(self.seeds)


def group_key(run: dict[str, Any]) -> GroupKey:
    return augment_of(run), str(run["model"]), str(run["scenario"]), int(run["window"]), inputs_of(run)


def per_seed(runs: list[dict[str, Any]], value: Callable[[dict[str, Any]], float | None]) -> Values:
    """Seed -> the mean of ``value`` over that seed's runs: the replicates of a row (seeds without a value left
    out)."""
    by_seed: dict[int, list[float]] = {}
    for r in runs:
        if (v := value(r)) is not None:
            by_seed.setdefault(seed_of(r), []).append(v)
    return {seed: math.fsum(v) / len(v) for seed, v in sorted(by_seed.items())}


def _order(key: GroupKey) -> tuple:
    """The report's order: scenario, model, window, input set, then the augmentations (``none`` first)."""
    augment, model, scenario, window, inputs = key
    rank = lambda v, order: order.index(v) if v in order else len(order)  # noqa: E731
    return (rank(scenario, SCENARIO_ORDER), scenario, rank(model, MODEL_ORDER), model, window,
            rank(inputs, INPUTS_ORDER), inputs, rank(augment, AUGMENT_ORDER), augment)


def augment_rows(runs: list[dict[str, Any]]) -> list[AugmentRow]:
    """The comparison's rows, each with its statistics over seeds and its paired difference from ``none``."""
    groups: dict[GroupKey, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(group_key(r), []).append(r)
    values = {k: {m: per_seed(rs, f) for m, f in RUN_VALUES.items()} for k, rs in groups.items()}
    rows = []
    for key in sorted(groups, key=_order):
        base = values.get((NO_AUGMENT, *key[1:])) if key[0] != NO_AUGMENT else None
        cell = groups[key]
        rows.append(AugmentRow(*key, seeds=tuple(sorted({seed_of(r) for r in cell})),
                               epochs=tuple(int(r["epochs"]) for r in cell if r.get("epochs") not in (None, "")),
                               values=values[key],
                               stats={m: t_interval(list(v.values())) for m, v in values[key].items()},
                               diff={m: t_interval(paired_differences(values[key][m], base[m])) if base
                                     else Interval(0, NAN) for m in METRICS}))
    return rows


def augments(rows: list[AugmentRow]) -> list[str]:
    """The augmentations among the rows, ``none`` first."""
    return ordered({r.augment for r in rows}, AUGMENT_ORDER)


def pooled(rows: list[AugmentRow], augment: str, metric: str) -> Interval:
    """The t-interval over every per-seed value of ``augment``'s rows (all their cells and seeds as replicates)."""
    return t_interval([v for r in rows if r.augment == augment for v in r.values[metric].values()])


def pooled_difference(rows: list[AugmentRow], augment: str, metric: str) -> Interval:
    """The t-interval over every paired difference of ``augment``'s rows from the ``none`` rows among ``rows``
    (pairs: same model, scenario, window, input set and seed); ``n`` is the number of pairs, 0 for ``none``."""
    if augment == NO_AUGMENT:
        return Interval(0, NAN)
    base = {(r.model, r.scenario, r.window, r.inputs): r.values[metric] for r in rows if r.augment == NO_AUGMENT}
    return t_interval([d for r in rows if r.augment == augment
                       for d in paired_differences(r.values[metric],
                                                   base.get((r.model, r.scenario, r.window, r.inputs), {}))])


def _blank(value: float) -> float | str:
    return "" if math.isnan(value) else value


def csv_rows(rows: list[AugmentRow]) -> list[list[Any]]:
    """augmentations.csv's rows (:data:`AUGMENT_COLUMNS`)."""
    out = []
    for r in rows:
        cells: list[Any] = [r.augment, r.model, r.scenario, r.window, r.inputs, r.runs]
        for m in METRICS:
            s = bounded(r.stats[m])
            cells += [_blank(s.mean), _blank(s.sd), _blank(s.low), _blank(s.high)]
        for m in METRICS:
            d = r.diff[m]
            cells += [d.n if r.augment != NO_AUGMENT else "", _blank(d.mean), _blank(d.low), _blank(d.high)]
        out.append(cells)
    return out


def series_label(row: AugmentRow, several_windows: bool, several_inputs: bool) -> str:
    """A bar's name: model and augmentation, plus window and input set where the sweep has several."""
    return (f"{row.model}, {row.augment}" + (f", {row.window} px" if several_windows else "")
            + (f", {row.inputs}" if several_inputs else ""))


def figure_data(rows: list[AugmentRow]) -> dict[str, Any]:
    """The figure's numbers: {"scenarios", "series": {label: [mean F1 per scenario]}, "intervals": {label: [[low,
    high] per scenario]} (cut to [0, 1]; NaN with one seed), "seeds"}; NaN where a series has no run."""
    scenarios = ordered({r.scenario for r in rows}, SCENARIO_ORDER)
    windows, inputs = {r.window for r in rows}, {r.inputs for r in rows}
    series: dict[str, list[float]] = {}
    intervals: dict[str, list[list[float]]] = {}
    for r in rows:
        label = series_label(r, len(windows) > 1, len(inputs) > 1)
        series.setdefault(label, [NAN] * len(scenarios))
        intervals.setdefault(label, [[NAN, NAN] for _ in scenarios])
        s, i = bounded(r.stats["mean_f1"]), scenarios.index(r.scenario)
        series[label][i], intervals[label][i] = s.mean, [s.low, s.high]
    return {"scenarios": scenarios, "series": series, "intervals": intervals,
            "seeds": sorted({seed for r in rows for seed in r.seeds})}
