"""The report's calibration section: a reliability diagram per model from the runs' stored bins, and their ECE.

Each run's metrics.json holds the reliability bins of its calibrated test probabilities (pixels, probability sum
and landslide pixels per 15 equal-width bins; ``calibration.reliability``). Bins add up, so a model's curve pools
every run of it (all seeds, windows and scenarios, the pooled ``all`` test areas): the share of landslide pixels
in each bin against the bin's mean probability. A calibrated model lies on the diagonal.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from slidemap.evaluation.calibration import ece, pool_bins
from slidemap.evaluation.scoring import POOLED
from slidemap.reporting.sweep import MODEL_ORDER, ordered
from slidemap.reporting.tables import pct

FIGURE = "reliability.png"
DPI = 150


def reliability_data(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: pooled bins of its runs' ``all`` test areas, its run count, mean temperature and the runs' mean
    ECE before and after calibration. Runs without bins (written before calibration) are left out."""
    per_model: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if POOLED in ((r.get("calibration") or {}).get("reliability") or {}):
            per_model.setdefault(str(r["model"]), []).append(r)
    out = {}
    for model in ordered(per_model, MODEL_ORDER):
        rs = per_model[model]
        bins = pool_bins([r["calibration"]["reliability"][POOLED] for r in rs])
        raw = [r["areas"][POOLED].get("ece_uncalibrated") for r in rs]
        raw = [v for v in raw if v is not None]
        out[model] = {"runs": len(rs), "bins": bins, "ece": ece(bins),
                      "mean_temperature": float(np.mean([float(r["calibration"].get("temperature", 1.0)) for r in rs])),
                      "mean_ece_uncalibrated": float(np.mean(raw)) if raw else math.nan}
    return out


def plot_reliability(data: dict[str, dict[str, Any]], path: Path) -> Path:
    """Reliability diagram (landslide share vs mean probability per bin, one line per model) over the share of
    pixels per bin."""
    fig = Figure(figsize=(5.5, 6.5))
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    n_bins = len(next(iter(data.values()))["bins"]["count"])
    width = 1.0 / n_bins / (len(data) + 1)
    for i, (model, d) in enumerate(data.items()):
        count = np.asarray(d["bins"]["count"], float)
        ok = count > 0
        mean_p = np.asarray(d["bins"]["probability_sum"], float)[ok] / count[ok]
        share = np.asarray(d["bins"]["landslides"], float)[ok] / count[ok]
        top.plot(mean_p, share, marker="o", label=f"{model} (ECE {pct(d['ece'])}%)")
        centres = (np.arange(n_bins) + 0.5) / n_bins
        bottom.bar(centres + (i - (len(data) - 1) / 2) * width, count / count.sum(), width=width, label=model)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("share of landslide pixels")
    top.set_title("Reliability of the calibrated probabilities\n(all test areas pooled, every run of a model)",
                  fontsize=10)
    top.legend(fontsize=8, loc="upper left")
    bottom.set_yscale("log")
    bottom.set_xlabel("predicted landslide probability (bin mean)")
    bottom.set_ylabel("share of pixels")
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def write_reliability(runs: list[dict[str, Any]], folder: Path) -> str:
    """Draw ``reliability.png`` into ``folder`` and return the report's Markdown section ("" without bins)."""
    data = reliability_data(runs)
    if not data:
        return ""
    plot_reliability(data, folder / FIGURE)
    lines = ["", "## Calibration", "",
             "Probabilities are temperature-scaled on each run's validation area (one temperature T per run: "
             "probability = sigmoid(logit / T)); the test scores at threshold 0.5 do not change. Expected calibration "
             "error (ECE, %, 15 bins) on all test areas pooled: of the pooled bins of every run of a model, and the "
             "runs' mean before calibration.", "",
             f"![reliability diagram]({FIGURE})", "",
             "| model | runs | mean T | ECE calibrated | mean ECE uncalibrated |", "|---|--:|--:|--:|--:|"]
    lines += [f"| {m} | {d['runs']} | {d['mean_temperature']:.2f} | {pct(d['ece'])} | "
              f"{pct(d['mean_ece_uncalibrated'])} |" for m, d in data.items()]
    return "\n".join(lines) + "\n"
