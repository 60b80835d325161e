"""The scores landslide papers report beside pixel F1, over the seeds of each cell: average precision
(threshold-free), MCC, object scores (reference landslides found, predicted polygons that hit one) and the threshold
a run used; summary.csv's extra columns and the report's table of them.

Runs from before these scores (no ``average_precision`` in their areas) leave their cells' values blank.
"""

from __future__ import annotations

import math
from typing import Any

from slidemap.reporting.stats import Interval, bounded, t_interval
from slidemap.reporting.sweep import SCENARIO_ORDER, areas_of, input_sets, ordered, scenario_title
from slidemap.reporting.tables import SUMMARY_COLUMNS, format_interval, replicates, summary_rows

EXTRA_METRICS = (("average_precision", "AP", (0.0, 1.0)), ("mcc", "MCC", (-1.0, 1.0)),
                 ("objects.found", "found", (0.0, 1.0)), ("objects.hit", "hit", (0.0, 1.0)))
"""(key in an area's metrics, short name, range): ``objects.x`` is ``objects[x]``."""

EXTRA_COLUMNS = (*(f"{key.replace('objects.', 'objects_')}_{s}" for key, _, _ in EXTRA_METRICS
                   for s in ("mean", "sd", "ci_low", "ci_high")), "threshold_mean")
"""summary.csv's columns after the paper's metrics (fractions; MCC in [-1, 1])."""


def metric_value(area: dict[str, Any], key: str) -> float | None:
    """``area[key]``, or ``area["objects"][x]`` for ``objects.x``; None where absent or undefined."""
    head, _, tail = key.partition(".")
    value = area.get(head)
    if tail:
        value = value.get(tail) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def extra_stats(cell_runs: list[dict[str, Any]], area: str) -> dict[str, Interval]:
    """The t-interval of each extra metric over the cell's seeds on one area, cut to the metric's range."""
    out = {}
    for key, _, (low, high) in EXTRA_METRICS:
        values = [metric_value(r["areas"][area], key) for r in cell_runs if area in r["areas"]]
        out[key] = bounded(t_interval([v for v in values if v is not None]), low, high)
    return out


def threshold_mean(cell_runs: list[dict[str, Any]]) -> float:
    """The mean threshold the cell's runs mapped with (0.5 for runs from before ``threshold`` was recorded)."""
    values = [float(r.get("threshold", 0.5)) for r in cell_runs]
    return math.fsum(values) / len(values) if values else math.nan


def extra_cells(cell_runs: list[dict[str, Any]], area: str) -> list[Any]:
    """summary.csv's :data:`EXTRA_COLUMNS` of one cell and area (blank where no run has the metric)."""
    stats = extra_stats(cell_runs, area)
    cells = [v for key, _, _ in EXTRA_METRICS
             for v in (stats[key].mean, stats[key].sd, stats[key].low, stats[key].high)]
    return ["" if math.isnan(v) else v for v in cells] + [round(threshold_mean(cell_runs), 6)]


def summary_with_extra(runs: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[list[Any]]]:
    """summary.csv: the paper's columns (:func:`~slidemap.reporting.tables.summary_rows`) and :data:`EXTRA_COLUMNS`."""
    cells = replicates(runs)
    rows = [row + extra_cells(cells[(row[0], row[1], row[2], row[3])], row[4]) for row in summary_rows(runs)]
    return (*SUMMARY_COLUMNS, *EXTRA_COLUMNS), rows


def has_extra(runs: list[dict[str, Any]]) -> bool:
    """Whether any run recorded the extra metrics (runs from before them did not)."""
    return any("average_precision" in m for r in runs for m in r["areas"].values())


def extra_section(runs: list[dict[str, Any]]) -> list[str]:
    """report.md's table of AP, MCC and object scores per scenario (cells x areas), mean +- 95% t-interval."""
    if not has_extra(runs):
        return []
    areas = areas_of(runs)
    several = len(input_sets(runs)) > 1
    lines = ["## Threshold-free, MCC and object scores", "",
             "Average precision (AP, threshold-free: from a histogram of the test probabilities), Matthews "
             "correlation (MCC, percent of its [-1, 1] scale) and object scores: `found` = share of reference "
             "landslides (8-connected) with at least one predicted pixel, `hit` = share of predicted polygons "
             "(4-connected) with at least one reference landslide pixel (minimum overlap: 1 pixel). Mean over seeds "
             "± the half-width of the 95% t-interval; `threshold` = the mean threshold the cell mapped with "
             "(`threshold=auto` fits it per run). Numbers: [summary.csv](summary.csv).", ""]
    for scenario in ordered({r["scenario"] for r in runs}, SCENARIO_ORDER):
        cells = {k: v for k, v in replicates(runs).items() if k[2] == scenario}
        names = ["model", "window"] + (["variant"] if several else []) + ["n", "threshold"]
        head = names + [f"{a} {short}" for a in areas for _, short, _ in EXTRA_METRICS]
        lines += [f"### {scenario_title(scenario)}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(names) + "--:|" * (len(head) - len(names))]
        for (model, window, _, variant), cell_runs in cells.items():
            row = [model, str(window)] + ([variant] if several else []) + [str(len(cell_runs)),
                                                                          f"{threshold_mean(cell_runs):.3g}"]
            for a in areas:
                stats = extra_stats(cell_runs, a)
                row += [format_interval(stats[key]) for key, _, _ in EXTRA_METRICS]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return lines
