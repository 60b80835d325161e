"""The sweep report's figures: the numbers they plot (pure, testable) and the PNGs (the TP/FP/FN panels: panels.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from slidemap.reporting.stats import NAN, bounded, t_interval
from slidemap.reporting.sweep import (MODEL_ORDER, SCENARIO_ORDER, areas_of, input_sets, ordered, run_key, seed_of,
                                      site_f1)

DPI = 150
MODEL_COLOURMAPS = ("Blues", "Oranges", "Greens", "Purples")  # one hue per model, a shade per input set
RULE_STYLES = ({"color": "#d9d9d9", "hatch": "///"}, {"color": "#969696", "hatch": "..."})


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def per_seed_means(runs: list[dict[str, Any]],
                   values: Callable[[dict[str, Any]], list[float]] = site_f1) -> list[float]:
    """For each seed, the mean of ``values`` (default: F1 on the site test areas) over its runs: the replicates of an
    averaged figure value."""
    by_seed: dict[int, list[float]] = {}
    for r in runs:
        by_seed.setdefault(seed_of(r), []).extend(values(r))
    return [_mean(v) for _, v in sorted(by_seed.items()) if v]


def _bar(runs: list[dict[str, Any]],
         values: Callable[[dict[str, Any]], list[float]] = site_f1) -> tuple[float, list[float]]:
    """A bar's value (the mean of the per-seed means) and its 95% t-interval over seeds, cut to [0, 1] ([NaN, NaN]
    for one seed)."""
    ci = bounded(t_interval(per_seed_means(runs, values)))
    return ci.mean, [ci.low, ci.high]


def _area_f1(area: str) -> Callable[[dict[str, Any]], list[float]]:
    """A run's F1 on ``area`` (empty when it was not tested there)."""
    return lambda r: [r["areas"][area]["f1"]] if area in r["areas"] and r["areas"][area]["f1"] is not None else []


def figure_data(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every number the summary figures plot (F1 as fractions, means over the site test areas).

    A bar averages several cells (windows, test areas); its replicates are the seeds: each seed's mean over those
    cells, and the bar is their mean with a 95% t-interval (NaN with one seed; with one seed the bar is the plain
    mean of the values).

    Returns:
        ``scenario_model``: {scenario: {model: mean F1 over windows and site test areas}} (paper Fig. 10);
        ``window_scenario``: {model: {scenario: {window: mean F1 over site test areas}}} (paper Fig. 11);
        ``scenario_model_ci`` and ``window_scenario_ci``: the same shapes holding [low, high] of each bar;
        ``seeds``: the seeds the runs hold;
        ``transfer``: {"scenarios", "areas", "f1", "ci"}: F1 per training scenario (rows) and test area (columns),
        averaged over models and windows (per seed, then over seeds), with its [low, high]; NaN where no run tested
        that pair.
    """
    scenarios = ordered({r["scenario"] for r in runs}, SCENARIO_ORDER)
    models = ordered({r["model"] for r in runs}, MODEL_ORDER)
    windows = sorted({int(r["window"]) for r in runs})
    fig10 = {s: {m: _bar([r for r in runs if r["scenario"] == s and r["model"] == m]) for m in models}
             for s in scenarios}
    fig11 = {m: {s: {w: _bar([r for r in runs if (r["model"], r["scenario"], int(r["window"])) == (m, s, w)])
                     for w in windows} for s in scenarios} for m in models}
    areas = areas_of(runs)
    transfer = [[_bar([r for r in runs if r["scenario"] == s], _area_f1(a)) for a in areas] for s in scenarios]
    return {"scenario_model": {s: {m: v[0] for m, v in per.items()} for s, per in fig10.items()},
            "scenario_model_ci": {s: {m: v[1] for m, v in per.items()} for s, per in fig10.items()},
            "window_scenario": {m: {s: {w: v[0] for w, v in per_w.items()} for s, per_w in per.items()}
                                for m, per in fig11.items()},
            "window_scenario_ci": {m: {s: {w: v[1] for w, v in per_w.items()} for s, per_w in per.items()}
                                   for m, per in fig11.items()},
            "seeds": sorted({seed_of(r) for r in runs}),
            "transfer": {"scenarios": scenarios, "areas": areas, "f1": [[v[0] for v in row] for row in transfer],
                         "ci": [[v[1] for v in row] for row in transfer]}}


def _own_f1(areas: dict[str, dict[str, Any]], scenario: str) -> list[float]:
    """F1 on the trained site's own test area: single-site scenarios only (``all`` trains on every site)."""
    return ([areas[scenario]["f1"]] if scenario != "all" and scenario in areas and areas[scenario]["f1"] is not None
            else [])


def _run_own_f1(run: dict[str, Any]) -> list[float]:
    return _own_f1(run["areas"], run["scenario"])


def input_set_data(runs: list[dict[str, Any]], rules: dict[str, dict] | None = None) -> dict[str, Any]:
    """The numbers of the input-set comparison: per scenario, model and input set, and per rule baseline.

    ``mean_f1`` is the mean F1 over the site test areas of the scenario's runs (pooled ``all`` left out, windows
    averaged, as in Fig. 10); ``own_f1`` the F1 on the trained site's own test area (NaN for scenario ``all``).

    Returns:
        {"scenarios": [...], "rows": [{"kind": "model", "name", "inputs", "runs", "mean_f1", "own_f1", "mean_f1_ci",
        "own_f1_ci"}, ...] then one {"kind": "rule", "name": label, ...} per rule; ``mean_f1`` and ``own_f1`` map
        scenario -> F1 (the mean of the per-seed means), the ``_ci`` keys scenario -> [low, high] over seeds (NaN
        with one seed, and always for the rules, which have no seed)}.
    """
    scenarios = ordered({r["scenario"] for r in runs}, SCENARIO_ORDER)
    rows = []
    for model in ordered({r["model"] for r in runs}, MODEL_ORDER):
        for inputs in input_sets(runs):
            picked = {s: [r for r in runs if (r["model"], run_key(r)[3], r["scenario"]) == (model, inputs, s)]
                      for s in scenarios}
            mean = {s: _bar(picked[s]) for s in scenarios}
            own = {s: _bar(picked[s], _run_own_f1) for s in scenarios}
            rows.append({"kind": "model", "name": model, "inputs": inputs,
                         "runs": {s: len(picked[s]) for s in scenarios},
                         "mean_f1": {s: v[0] for s, v in mean.items()}, "own_f1": {s: v[0] for s, v in own.items()},
                         "mean_f1_ci": {s: v[1] for s, v in mean.items()},
                         "own_f1_ci": {s: v[1] for s, v in own.items()}})
    for label, rule in (rules or {}).items():
        per_scenario = {s: rule["scenarios"].get(s) for s in scenarios}
        rows.append({"kind": "rule", "name": label, "inputs": "", "runs": {s: 0 for s in scenarios},
                     "mean_f1": {s: _mean(site_f1({"areas": a}) if a else []) for s, a in per_scenario.items()},
                     "own_f1": {s: _mean(_own_f1(a, s) if a else []) for s, a in per_scenario.items()},
                     "mean_f1_ci": {s: [NAN, NAN] for s in scenarios}, "own_f1_ci": {s: [NAN, NAN] for s in scenarios}})
    return {"scenarios": scenarios, "rows": rows}


def _scenario_label(scenario: str) -> str:
    return "trained on\nall sites" if scenario == "all" else f"trained on\n{scenario}"


def save_figure(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def _error_bars(values: np.ndarray, intervals: list[list[float]] | None) -> np.ndarray | None:
    """matplotlib's ``yerr`` (2 x n, below and above, percent) of 95% intervals; NaN (no bar, no cap) where there is
    no interval."""
    if intervals is None:
        return None
    ci = 100 * np.asarray(intervals, dtype=float).reshape(len(values), 2)
    return np.stack([values - ci[:, 0], ci[:, 1] - values]).clip(min=0)


def _grouped_bars(ax: Any, groups: list[str], series: dict[str, list[float]], legend_title: str,
                  intervals: dict[str, list[list[float]]] | None = None) -> None:
    """Bars of each series side by side per group, each labelled with its value in percent, with the 95%
    interval of each bar as an error bar where ``intervals`` ({series: [[low, high] per group]}) give one."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        pct = 100 * np.asarray(values, dtype=float)
        yerr = _error_bars(pct, (intervals or {}).get(name))
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, np.nan_to_num(pct), width, label=name, yerr=yerr,
                      capsize=3, error_kw={"elinewidth": 1, "ecolor": "black"})
        ax.bar_label(bars, labels=["–" if np.isnan(v) else f"{v:.1f}" for v in pct], padding=2, fontsize=8)
    ax.set_xticks(x, [_scenario_label(g) for g in groups])
    ax.set_ylim(0, 105)
    ax.set_ylabel("mean F1 (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(title=legend_title, loc="upper right", fontsize=8, title_fontsize=8, ncols=len(series))


def _bar_note(data: dict[str, Any]) -> str:
    """What the error bars are, or that there are none (one seed)."""
    if len(data.get("seeds", [])) < 2:
        return "one seed: no error bars (no interval can be given)"
    return f"error bars: 95% t-interval over {len(data['seeds'])} seeds of each seed's mean"


def plot_scenario_model(data: dict[str, Any], path: Path) -> Path:
    """Paper Fig. 10: mean F1 per training scenario, one bar per model."""
    table = data["scenario_model"]
    scenarios = list(table)
    models = list(next(iter(table.values()), {}))
    fig = Figure(figsize=(max(6.0, 1.6 * len(scenarios) + 2), 4.5))
    ax = fig.add_subplot()
    ci = data.get("scenario_model_ci")
    _grouped_bars(ax, scenarios, {m: [table[s][m] for s in scenarios] for m in models}, "model",
                  {m: [ci[s][m] for s in scenarios] for m in models} if ci else None)
    ax.set_xlabel("training scenario")
    ax.set_title("Mean F1 per scenario and model (cf. paper Fig. 10)\n"
                 f"mean over the site test areas and all windows; {_bar_note(data)}", fontsize=10)
    return save_figure(fig, path)


def plot_window_scenario(data: dict[str, Any], path: Path) -> Path:
    """Paper Fig. 11: mean F1 per training scenario, one bar per window, one panel per model."""
    table = data["window_scenario"]
    models = list(table)
    fig = Figure(figsize=(max(6.0, 1.6 * len(next(iter(table.values()), {})) + 2), 3.8 * len(models)))
    axes = fig.subplots(len(models), 1, squeeze=False, sharex=True)[:, 0]
    for ax, model in zip(axes, models):
        scenarios = list(table[model])
        windows = list(next(iter(table[model].values()), {}))
        ci = data.get("window_scenario_ci", {}).get(model)
        _grouped_bars(ax, scenarios, {f"{w} px": [table[model][s][w] for s in scenarios] for w in windows}, "window",
                      {f"{w} px": [ci[s][w] for s in scenarios] for w in windows} if ci else None)
        ax.set_title(f"{model}", fontsize=10, loc="left", fontweight="bold")
    axes[-1].set_xlabel("training scenario")
    fig.suptitle(f"Mean F1 per window and scenario (cf. paper Fig. 11)\nmean over the site test areas; "
                 f"{_bar_note(data)}", fontsize=10)
    return save_figure(fig, path)


def _bar_styles(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bar colours of the input-set figure: a hue per model, lighter to darker per input set; rules grey, hatched."""
    models = list(dict.fromkeys(r["name"] for r in rows if r["kind"] == "model"))
    inputs = list(dict.fromkeys(r["inputs"] for r in rows if r["kind"] == "model"))
    shades = np.linspace(0.4, 0.85, len(inputs)) if len(inputs) > 1 else [0.65]
    styles, rules = [], 0
    for row in rows:
        if row["kind"] == "rule":
            styles.append({**RULE_STYLES[rules % len(RULE_STYLES)], "edgecolor": "black", "linewidth": 0.5})
            rules += 1
            continue
        cmap = colormaps[MODEL_COLOURMAPS[models.index(row["name"]) % len(MODEL_COLOURMAPS)]]
        styles.append({"color": cmap(shades[inputs.index(row["inputs"])]), "edgecolor": "black", "linewidth": 0.5})
    return styles


def plot_input_sets(data: dict[str, Any], path: Path) -> Path:
    """Mean F1 per training scenario: a bar per model x input set, then a hatched bar per rule baseline.

    Values are printed vertically above the bars so that eight bars a group stay legible; the legend sits
    outside the axes, where it cannot hide a bar.
    """
    scenarios, rows = data["scenarios"], data["rows"]
    width = 0.84 / max(len(rows), 1)
    x = np.arange(len(scenarios))
    fig = Figure(figsize=(max(7.0, 0.4 * len(rows) * len(scenarios) + 3.5), 5.0), layout="constrained")
    ax = fig.add_subplot()
    for i, (row, style) in enumerate(zip(rows, _bar_styles(rows))):
        pct = 100 * np.array([row["mean_f1"][s] for s in scenarios], dtype=float)
        label = f"{row['name']}, {row['inputs']}" if row["kind"] == "model" else row["name"]
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, np.nan_to_num(pct), width, label=label, **style)
        ax.bar_label(bars, labels=["–" if np.isnan(v) else f"{v:.1f}" for v in pct], padding=2, fontsize=7,
                     rotation=90)
    ax.set_xticks(x, [_scenario_label(s) for s in scenarios])
    ax.set_yticks(np.arange(0, 101, 20))
    ax.set_ylim(0, 118)  # head room for the vertical value labels
    ax.set_ylabel("mean F1 over the site test areas (%)")
    ax.set_xlabel("training scenario")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(title="model, input set", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)
    ax.set_title("Mean F1 per input set, model and training scenario\nmean over the site test areas and windows; "
                 "hatched: the rule baselines (no learning)", fontsize=10)
    return save_figure(fig, path)


def plot_augmentations(data: dict[str, Any], path: Path) -> Path:
    """Mean F1 per training scenario, one bar per augmentation and model (``augmentations.figure_data``), with the
    95% t-interval over seeds as error bars when the sweep has several seeds."""
    scenarios, series = data["scenarios"], data["series"]
    fig = Figure(figsize=(max(7.0, 0.35 * len(series) * len(scenarios) + 3.0), 5.0))
    ax = fig.add_subplot()
    _grouped_bars(ax, scenarios, series, "model, augmentation",
                  data["intervals"] if len(data.get("seeds", [])) > 1 else None)
    ax.legend(title="model, augmentation", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title_fontsize=8)
    ax.set_xlabel("training scenario")
    ax.set_title("Mean F1 per augmentation, model and training scenario\n"
                 f"mean over the site test areas; {_bar_note(data)}", fontsize=10)
    return save_figure(fig, path)


def plot_transfer(data: dict[str, Any], path: Path) -> Path:
    """Heat map of F1 per training scenario and test area (mean over models and windows), own site boxed."""
    t = data["transfer"]
    f1 = 100 * np.asarray(t["f1"], dtype=float).reshape(len(t["scenarios"]), len(t["areas"]))
    fig = Figure(figsize=(1.3 * len(t["areas"]) + 2.5, 0.8 * len(t["scenarios"]) + 1.8))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(f1), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i, scenario in enumerate(t["scenarios"]):
        for j, area in enumerate(t["areas"]):
            v = f1[i, j]
            ax.text(j, i, "–" if np.isnan(v) else f"{v:.1f}", ha="center", va="center", fontsize=10,
                    color="black" if np.isnan(v) or v > 60 else "white")
            if scenario == area:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(t["areas"])), ["all (pooled)" if a == "all" else a for a in t["areas"]])
    ax.set_yticks(range(len(t["scenarios"])), [_scenario_label(s).replace("\n", " ") for s in t["scenarios"]])
    ax.set_xlabel("test area")
    ax.set_ylabel("training scenario")
    fig.colorbar(image, ax=ax, label="F1 (%)")
    ax.set_title("Transfer matrix: F1 (%) averaged over models and windows\n"
                 "red box: trained and tested on the same site", fontsize=10)
    return save_figure(fig, path)
