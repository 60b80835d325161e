"""The report.md section of the augmentation comparison: the table of reporting/augmentations.py's rows and one
verdict line per augmentation."""

from __future__ import annotations

import math
from pathlib import Path

from slidemap.reporting import augmentations as aug
from slidemap.reporting.stats import CONTRADICTED, SUPPORTED, Interval, bounded, verdict
from slidemap.reporting.sweep import NO_AUGMENT
from slidemap.reporting.tables import pct, pct_interval


def _stat_cell(interval: Interval) -> str:
    """``mean ± half-width (sd)`` in percent (cut to [0, 100%] as ``mean (low–high) (sd)``); the mean alone for one
    seed; ``–`` where there is no value."""
    if interval.n == 0:
        return "–"
    s = bounded(interval)
    return pct_interval(s.mean, s.low, s.high) + ("" if math.isnan(s.sd) else f" ({pct(s.sd)})")


def _diff_cell(interval: Interval) -> str:
    """A paired difference in F1 points, ``mean ± half-width``; ``–`` without pairs."""
    return "–" if interval.n == 0 else pct_interval(interval.mean, interval.low, interval.high)


def augment_sentence(rows: list[aug.AugmentRow], augment: str) -> str:
    """Whether ``augment``'s paired difference from ``none`` in mean F1, pooled over its rows' pairs, excludes 0."""
    d = aug.pooled_difference(rows, augment, "mean_f1")
    if d.n == 0:
        return (f"`{augment}`: no `none` run shares a model, scenario, window, input set and seed with it, so there "
                "is no paired difference.")
    if not d.has_interval:
        return f"`{augment}`: {pct(d.mean)} F1 points vs `none` from a single pair: no interval, so no verdict."
    judged = verdict(d)
    size = (f"{pct(d.mean)} F1 points vs `none` (95% interval {pct(d.low)} to {pct(d.high)}, {d.n} pairs by model, "
            "scenario, window and seed)")
    if judged == SUPPORTED:
        return f"`{augment}`: {size}; the interval excludes 0: better than `none`."
    if judged == CONTRADICTED:
        return f"`{augment}`: {size}; the interval excludes 0: worse than `none`."
    return f"`{augment}`: {size}; the interval includes 0: no difference from `none` shown."


def augmentations_section(rows: list[aug.AugmentRow], figure: Path) -> list[str]:
    """The augmentation comparison: mean, own-site and transfer F1 per augmentation, model and scenario."""
    names = ["scenario", "model"] + (["window"] if len({r.window for r in rows}) > 1 else []) \
        + (["inputs"] if len({r.inputs for r in rows}) > 1 else []) + ["augment", "n"]
    head = ["mean F1", "own-site F1", "transfer F1", "mean F1 − none (paired)"]
    lines = ["## Augmentations", "",
             "F1 (%) per augmentation, model and training scenario: `mean` over the site test areas (pooled `all` "
             "left out), `own-site` on the trained site's test area and `transfer` the mean over the other sites' "
             "(single-site scenarios); `n` seeds; each `mean ± half-width (sd)`, the half-width of the 95% "
             "t-interval and the sd over seeds (the mean alone with one seed). The last column: the difference from "
             "`none` of the same model, scenario, window and input set, paired by seed, ± the half-width of its 95% "
             "t-interval. Numbers, as fractions: [augmentations.csv](augmentations.csv).", "",
             f"![mean F1 per augmentation]({figure.name})", "",
             "| " + " | ".join(names + head) + " |", "|" + "---|" * len(names) + "--:|" * len(head)]
    for r in rows:
        cells = {"scenario": r.scenario, "model": r.model, "window": f"{r.window} px", "inputs": r.inputs,
                 "augment": r.augment, "n": str(r.runs)}
        stats = [_stat_cell(r.stats[m]) for m in aug.METRICS]
        lines.append("| " + " | ".join([cells[n] for n in names] + stats + [_diff_cell(r.diff["mean_f1"])]) + " |")
    sentences = [augment_sentence(rows, a) for a in aug.augments(rows) if a != NO_AUGMENT]
    if sentences:
        lines += ["", "Paired difference in mean F1 from `none`, all of an augmentation's pairs pooled:", ""]
        lines += [f"- {s}" for s in sentences]
    return lines + [""]
