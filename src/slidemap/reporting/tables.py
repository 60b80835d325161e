"""The runs of a cell (model x window x scenario x inputs) taken together over seeds: summary.csv and the paper's
tables as mean +- the half-width of a 95% t-interval, with best values marked only where intervals separate."""

from __future__ import annotations

import math
from typing import Any

from slidemap.reporting.stats import Interval, bounded, separated, t_interval
from slidemap.reporting.sweep import (METRIC_COLUMNS, SCENARIO_ORDER, RunKey, areas_of, input_sets, ordered, run_key,
                                      scenario_title, seed_of)

SUMMARY_COLUMNS = ("model", "window", "scenario", "inputs", "area", "n",
                   *(f"{m}_{s}" for m in ("f1", "precision", "recall") for s in ("mean", "sd", "ci_low", "ci_high")))
Cell = dict[str, dict[str, Interval]]
"""One cell's statistics: {test area: {metric: interval over its seeds}}."""


def replicates(runs: list[dict[str, Any]]) -> dict[RunKey, list[dict[str, Any]]]:
    """The runs of each cell, in the runs' order (seed by seed): all runs of one key are replicates."""
    cells: dict[RunKey, list[dict[str, Any]]] = {}
    for r in runs:
        cells.setdefault(run_key(r), []).append(r)
    return cells


def cell_stats(runs: list[dict[str, Any]]) -> Cell:
    """Mean, sd and 95% t-interval over the runs (seeds) of one cell, per test area and metric; the interval is cut
    to [0, 1], the range of every metric (:func:`~slidemap.reporting.stats.bounded`)."""
    areas = dict.fromkeys(a for r in runs for a in r["areas"])
    return {a: {k: bounded(t_interval([r["areas"][a][k] for r in runs
                                       if a in r["areas"] and r["areas"][a][k] is not None]))
                for k, _ in METRIC_COLUMNS}
            for a in areas}


def summary_rows(runs: list[dict[str, Any]]) -> list[list[Any]]:
    """summary.csv: one row per cell and test area (fractions; sd and interval empty for a single run)."""
    rows = []
    for key, cell_runs in replicates(runs).items():
        model, window, scenario, inputs = key
        stats = cell_stats(cell_runs)
        for area in [a for a in areas_of(cell_runs) if a in stats]:
            per = stats[area]
            rows.append([model, window, scenario, inputs, area, per["f1"].n]
                        + [_blank(v) for k in ("f1", "precision", "recall")
                           for v in (per[k].mean, per[k].sd, per[k].low, per[k].high)])
    return rows


def _blank(value: float) -> float | str:
    return "" if math.isnan(value) else value


def seeds_of(runs: list[dict[str, Any]]) -> list[int]:
    """The seeds among the runs, sorted."""
    return sorted({seed_of(r) for r in runs})


def largest_n(runs: list[dict[str, Any]]) -> int:
    """The most runs any cell has (1: no cell has an interval)."""
    return max((len(v) for v in replicates(runs).values()), default=0)


def pct(value: float | None) -> str:
    """A fraction in percent with two decimals; ``n/a`` for an undefined one (None), ``–`` for a missing one."""
    if value is None:
        return "n/a"
    return "–" if isinstance(value, float) and math.isnan(value) else f"{100 * value:.2f}"


def pct_interval(mean: float, low: float, high: float) -> str:
    """``mean ± half-width`` in percent; ``mean (low–high)`` when the interval is not symmetric (cut at 0 or 1
    by :func:`~slidemap.reporting.stats.bounded`); the mean alone when there is no interval (NaN bounds)."""
    if math.isnan(low) or math.isnan(high):
        return pct(mean)
    if not math.isclose(mean - low, high - mean, rel_tol=1e-6, abs_tol=1e-9):
        return f"{pct(mean)} ({pct(low)}–{pct(high)})"
    return f"{pct(mean)} ± {pct((high - low) / 2)}"


def format_interval(interval: Interval) -> str:
    """``mean ± half-width`` in percent, or the mean alone when there is no interval (one run); n/a when no run
    has the value defined."""
    return "n/a" if interval.n == 0 else pct_interval(interval.mean, interval.low, interval.high)


def _name_columns(runs: list[dict[str, Any]]) -> list[str]:
    """The columns that tell a table's rows apart: model and window, the input set when several, and the number of
    runs (seeds) per cell when any cell has more than one."""
    return (["model", "window"] + (["inputs"] if len(input_sets(runs)) > 1 else [])
            + (["n"] if largest_n(runs) > 1 else []))


def _name_cell(key: RunKey, cell_runs: list[dict[str, Any]], column: str) -> str:
    model, window, _, inputs = key
    return {"model": model, "window": str(window), "inputs": inputs, "n": str(len(cell_runs))}[column]


def _epochs(cell_runs: list[dict[str, Any]]) -> str:
    """The epochs the cell's runs trained: one number, or the range over seeds."""
    epochs = sorted({int(r["epochs"]) for r in cell_runs if r.get("epochs") not in (None, "")})
    return "" if not epochs else str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"


def best_marks(stats: dict[RunKey, Cell], area: str, metric: str) -> set[RunKey]:
    """The cell whose mean is the column's best, when its interval lies above the runner-up's; else nobody.

    A single run has no interval, so a column with a single run at the top or second place marks nothing.
    """
    ranked = sorted((s[area][metric].mean, key) for key, s in stats.items() if area in s and s[area][metric].n)
    ranked.reverse()
    if len(ranked) < 2:
        return set()
    (_, best), (_, second) = ranked[0], ranked[1]
    return {best} if separated(stats[best][area][metric], stats[second][area][metric]) else set()


def scenario_tables(runs: list[dict[str, Any]], rules: dict[str, dict] | None = None) -> str:
    """Markdown: per scenario, rows model x window (x input set when the runs hold several), columns area x P/R/F1
    (percent): the mean over the cell's seeds +- the half-width of its 95% t-interval (the mean alone for one run).

    A value is bold only where it is its column's best mean and its interval does not overlap the runner-up's.
    Each rule baseline given ({row label: ``run_baseline`` result}) is a last italic row of each table; it never
    takes the best mark, which compares the learned models with one another as the paper's tables do.
    """
    areas = areas_of(runs)
    names = _name_columns(runs)
    out = []
    for scenario in ordered({r["scenario"] for r in runs}, SCENARIO_ORDER):
        cells = {k: v for k, v in replicates(runs).items() if k[2] == scenario}
        stats = {k: cell_stats(v) for k, v in cells.items()}
        marks = {(a, m): best_marks(stats, a, m) for a in areas for m, _ in METRIC_COLUMNS}
        out.append(f"### {scenario_title(scenario)}\n")
        head = names + ["epochs"] + [f"{a} {short}" for a in areas for _, short in METRIC_COLUMNS]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(names) + "--:|" + "--:|" * (3 * len(areas)))
        for key, cell_runs in cells.items():
            row = [_name_cell(key, cell_runs, n) for n in names] + [_epochs(cell_runs)]
            for a in areas:
                for m, _ in METRIC_COLUMNS:
                    value = format_interval(stats[key][a][m]) if a in stats[key] else ""
                    row.append(f"**{value}**" if key in marks[(a, m)] else value)
            out.append("| " + " | ".join(row) + " |")
        for label, rule in (rules or {}).items():
            per_area = rule.get("scenarios", {}).get(scenario)
            if per_area:
                row = [f"*{label}*"] + ["–"] * len(names)
                row += [f"*{pct(per_area[a][m])}*" if a in per_area else "" for a in areas for m, _ in METRIC_COLUMNS]
                out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def wide_table(runs: list[dict[str, Any]], scenario: str) -> tuple[list[str], list[list[Any]]]:
    """One scenario's table as columns and rows (model, window, [inputs,] n, then area x P/R/F1: the mean over the
    cell's seeds in percent), for W&B."""
    areas = areas_of(runs)
    names = [n for n in _name_columns(runs) if n != "n"]
    columns = names + ["n"] + [f"{a} {short}" for a in areas for _, short in METRIC_COLUMNS]
    rows = []
    for key, cell_runs in replicates(runs).items():
        if key[2] != scenario:
            continue
        stats = cell_stats(cell_runs)
        rows.append([key[1] if n == "window" else _name_cell(key, cell_runs, n) for n in names] + [len(cell_runs)]
                    + [round(100 * stats[a][m].mean, 2) if a in stats else None for a in areas
                       for m, _ in METRIC_COLUMNS])
    return columns, rows
