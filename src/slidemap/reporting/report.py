"""`slidemap report`: a (partly) finished sweep directory -> report.md, CSVs and the paper's figures, atomically."""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slidemap.errors import InputError
from slidemap.io import atomic_dir, check_replaceable
from slidemap.reporting import augmentations as aug
from slidemap.reporting import figures as fig
from slidemap.reporting.baselines import (BASELINE_COLUMNS, RULES, Baselines, baseline_for, baseline_rows,
                                          load_sites)
from slidemap.reporting.augment_section import augmentations_section
from slidemap.reporting.claims import CLAIMS_COLUMNS, Claim, claims_section, judge_claims
from slidemap.reporting.extra_metrics import extra_section, summary_with_extra
from slidemap.reporting.panels import prediction_panels
from slidemap.reporting.reliability import write_reliability
from slidemap.reporting.records import undefined_metrics
from slidemap.reporting.sweep import (Sweep, areas_of, input_sets, paper_runs, run_key, scan_sweep,
                                      transfer_summary)
from slidemap.reporting.tables import largest_n, pct, pct_interval, scenario_tables, seeds_of, wide_table

log = logging.getLogger(__name__)

RUN_COLUMNS = ("scenario", "model", "window", "inputs", "seed", "area", "precision", "recall", "f1", "iou", "tp", "fp",
               "fn", "epochs", "stopped_by", "wall_time_s", "train_sites", "run_dir")
INPUT_SET_COLUMNS = ("kind", "name", "inputs", "scenario", "runs", "mean_f1", "mean_f1_ci_low", "mean_f1_ci_high",
                     "own_site_f1", "own_site_f1_ci_low", "own_site_f1_ci_high")
INPUT_SET_FIGURE = "input_sets_mean_f1.png"
AUGMENT_COLUMNS = aug.AUGMENT_COLUMNS  # augmentations.csv; documented in reporting/augmentations.py
AUGMENT_FIGURE = "augmentations_mean_f1.png"
FIGURES = {"mean_f1_scenario_model": ("fig10_mean_f1_scenario_model.png", fig.plot_scenario_model),
           "mean_f1_window_scenario": ("fig11_mean_f1_window_scenario.png", fig.plot_window_scenario),
           "transfer_matrix": ("transfer_matrix.png", fig.plot_transfer)}


def run_rows(sweep: Sweep) -> list[list[Any]]:
    """runs.csv: one row per complete run and test area (fractions, not percent)."""
    rows = []
    for r in sweep.runs:
        for area, m in r["areas"].items():
            rows.append([r["scenario"], r["model"], r["window"], run_key(r)[3], r.get("seed", ""), area,
                         *(m.get(k, "") for k in ("precision", "recall", "f1", "iou", "tp", "fp", "fn")),
                         r.get("epochs", ""), r.get("stopped_by", ""), r.get("wall_time_s", ""),
                         "+".join(r.get("train_sites") or []),
                         str(Path(r["dir"]).relative_to(sweep.root)) if Path(r["dir"]).is_relative_to(sweep.root)
                         else r["dir"]])
    return rows


def input_set_rows(data: dict[str, Any]) -> list[list[Any]]:
    """input_sets.csv: the input-set figure's numbers with their 95% intervals over seeds, one row per bar
    (fractions; empty where no run, and intervals empty with one seed)."""
    return [[row["kind"], row["name"], row["inputs"], s, row["runs"][s],
             *("" if math.isnan(v) else v for k in ("mean_f1", "own_f1") for v in (row[k][s], *row[f"{k}_ci"][s]))]
            for row in data["rows"] for s in data["scenarios"]]


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def _no_nan(value: Any) -> Any:
    """JSON has no NaN: a mean over no runs becomes null."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def seeds_note(runs: list[dict[str, Any]]) -> str:
    """How to read the tables' cells: seeds per cell, the interval, and when a value is marked best."""
    seeds = seeds_of(runs)
    if largest_n(runs) <= 1:
        return (f"Every cell is a single run (seed {', '.join(map(str, seeds))}): no interval can be given, so no "
                "value is marked best. Single runs differ by several F1 points from seed to seed; a sweep over "
                "seeds (`seed=0,1,2,...`) gives means with 95% intervals.")
    return (f"A cell is the mean over its runs (seeds {', '.join(map(str, seeds))}; their number in column `n`) "
            "± the half-width of its 95% Student-t interval (t(0.975, n-1) · sd / √n); where that interval would "
            "pass 0 or 100% it is cut there and shown as its bounds, `mean (low–high)`; a value without ± is a "
            "single run, for which no interval can be given. **Bold**: the column's best mean among the models, "
            "only where its interval does not overlap the runner-up's (the rule baseline rows are for reference and "
            "never marked).")


def _bars_note(seeds: list[int], averaged: str) -> str:
    """What a figure's error bars (and the ± of its table) are; ``averaged``: what one value averages."""
    if len(seeds) < 2:
        return "One seed: no interval can be given, so the bars have no error bars."
    return (f"Each value averages {averaged}; its replicates are the seeds ({len(seeds)}): each seed's mean over "
            "those. Error bars and ±: the 95% Student-t interval of these per-seed means (half-width in the table; "
            "cut at 0 and 100%, then shown as `mean (low–high)`); a value without ± has a single seed.")


UNDEFINED_WHY = {"precision": "no pixel predicted as landslide", "recall": "no reference landslide pixel",
                 "f1": "no reference landslide pixel", "iou": "no reference landslide pixel"}


def _missing_section(sweep: Sweep) -> list[str]:
    missing = sweep.missing()
    lines = [f"{len(missing)} expected job(s) have no complete run; the tables and figures leave them out. "
             "Re-running the sweep command into the same folder (hydra.sweep.dir) reruns the failed and missing ones "
             "and skips the rest.", "", "| job (its overrides) | status |", "|---|---|"] + \
        [f"| {n} | {why} |" for n, why in missing] if missing else ["None: every expected job has a complete run."]
    undefined = undefined_metrics(sweep.runs)
    if undefined:
        lines += ["", "Undefined metrics (n/a in the tables; left out of every mean, figure and claim): "
                  + "; ".join(f"{metric} on {area} in {len(dirs)} run(s) ({UNDEFINED_WHY[metric]})"
                              for (area, metric), dirs in sorted(undefined.items())) + "."]
    return lines


def _baseline_section(runs: list[dict[str, Any]], baselines: Baselines, sites_ok: bool, data_note: str) -> list[str]:
    if not baselines.rules and baselines.ndvi_absent:
        return [f"Not computed: both rules need NDVI, and {baselines.ndvi_absent}."]
    if not baselines.rules:
        return [f"Not computed: {'no scenario trained on sites that could be read' if sites_ok else data_note}."]
    areas = areas_of(runs)
    lines = ["A pixel is a landslide where an index is below t1 on ground at least t2 steep, thresholds grid-searched "
             "for the best F1 on each scenario's training and validation areas: the post-event NDVI (NDVI rule) or "
             "the relative NDVI change from the pre-event image (rdNDVI x 100, HazMapper's; rdNDVI rule). Sites read "
             f"from `{data_note}`. Values in [baseline.csv](baseline.csv).", "",
             "| rule | trained on | index | slope >= | " + " | ".join(f"{a} F1" for a in areas) + " |",
             "|---|---|--:|--:|" + "--:|" * len(areas)]
    for method, result in baselines.rules.items():
        info = RULES[method]
        for s, per_area in result["scenarios"].items():
            t = result["thresholds"][s]
            f1s = [pct(per_area[a]["f1"]) if a in per_area else "–" for a in areas]
            lines.append(f"| {info.name} | {s} | {info.condition} {info.fmt.format(t[info.threshold])} | "
                         f"{t['slope_min']:.0f}° | " + " | ".join(f1s) + " |")
    if baselines.rdndvi_absent:
        lines += ["", f"The rdNDVI rule is absent: {baselines.rdndvi_absent}."]
    return lines


def _input_sets_section(runs: list[dict[str, Any]], data: dict[str, Any], figure: Path) -> list[str]:
    """The input-set comparison: mean and own-site F1 per scenario, model and input set, next to the rules."""
    scenarios = data["scenarios"]
    channels = {i: next((r.get("channels") for r in runs if run_key(r)[3] == i and r.get("channels")), None)
                for i in input_sets(runs)}
    head = [f"{s} {kind}" for s in scenarios for kind in (("mean",) if s == "all" else ("mean", "own"))]
    augmented = any("+" in i for i in channels)
    lines = ["## Input sets and augmentations" if augmented else "## Input sets", "",
             "Input sets: " + "; ".join(f"`{i}` ({', '.join(c) if c else 'channels not recorded'})"
                                        for i, c in channels.items()) + ".", "",
             *(["`<inputs>+<augmentation>`: trained with that augmentation (conf/augment: `d4` flips and rotations, "
                "`offsets` random patch positions, `full` both plus a photometric jitter); without `+`: the paper's "
                "fixed grid, no augmentation. The paper's tables and claims use the un-augmented `post` runs.", ""]
               if augmented else []),
             "F1 (%) per training scenario, model and input set: `mean` is the mean over the site test areas of the "
             "scenario's runs (pooled `all` left out, windows averaged); `own` is the F1 on the trained site's own "
             "test area (single-site scenarios); ± the half-width of the 95% t-interval over seeds when the sweep has "
             "several. The rule baselines are fitted per scenario as above. Numbers, as "
             "fractions: [input_sets.csv](input_sets.csv).", "",
             f"![mean F1 per input set]({figure.name})", "",
             "| model | inputs | " + " | ".join(head) + " |", "|---|---|" + "--:|" * len(head)]
    for row in data["rows"]:
        cells = [pct_interval(row[k][s], *row[f"{k}_ci"][s])
                 for s in scenarios for k in (("mean_f1",) if s == "all" else ("mean_f1", "own_f1"))]
        name, inputs = (row["name"], row["inputs"]) if row["kind"] == "model" else (f"*{row['name']}*", "–")
        lines.append(f"| {name} | {inputs} | " + " | ".join(cells) + " |")
    return lines + [""]


def _figure_sections(runs: list[dict[str, Any]], data: dict[str, Any], figures: dict[str, Path]) -> list[str]:
    scenarios = list(data["scenario_model"])
    used = input_sets(paper_runs(runs))
    over = f" (input set{'s' if len(used) > 1 else ''} {', '.join(used)} only)" if len(input_sets(runs)) > 1 else ""
    lines = ["## Mean F1 per scenario and model (paper Fig. 10)", "",
             f"Mean F1 (%) over the site test areas (pooled `all` left out) and all windows{over}. "
             + _bars_note(data["seeds"], "the site test areas of every window"), "",
             f"![mean F1 per scenario and model]({figures['mean_f1_scenario_model'].name})", "",
             "| model | " + " | ".join(f"trained on {s}" for s in scenarios) + " |", "|---|" + "--:|" * len(scenarios)]
    fig10, ci10 = data["scenario_model"], data["scenario_model_ci"]
    for model in next(iter(fig10.values())):
        cells = [pct_interval(fig10[s][model], *ci10[s][model]) for s in scenarios]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "## Mean F1 per window and scenario (paper Fig. 11)", "",
              f"Mean F1 (%) over the site test areas{over}. " + _bars_note(data["seeds"], "the site test areas"), "",
              f"![mean F1 per window and scenario]({figures['mean_f1_window_scenario'].name})", "",
              "| model | window | " + " | ".join(f"trained on {s}" for s in scenarios) + " |",
              "|---|---|" + "--:|" * len(scenarios)]
    for model, per_s in data["window_scenario"].items():
        ci = data["window_scenario_ci"][model]
        for w in next(iter(per_s.values())):
            lines.append(f"| {model} | {w} px | " + " | ".join(pct_interval(per_s[s][w], *ci[s][w]) for s in scenarios)
                         + " |")
    t, summary = data["transfer"], transfer_summary(paper_runs(runs))
    lines += ["", "## Transfer matrix", "", "F1 (%) per training scenario (rows) and test area (columns), averaged "
              f"over models and windows{over} (per seed, then ± the half-width of the 95% t-interval over seeds when "
              f"there are several). Single-site scenarios: mean F1 {pct(summary['own_site_f1'])} on the "
              f"site's own test area, {pct(summary['other_site_f1'])} on the other sites'.", "",
              f"![transfer matrix]({figures['transfer_matrix'].name})", "",
              "| trained on | " + " | ".join(t["areas"]) + " |", "|---|" + "--:|" * len(t["areas"])]
    lines += [f"| {s} | " + " | ".join(pct_interval(v, *ci) for v, ci in zip(row, cis)) + " |"
              for s, row, cis in zip(t["scenarios"], t["f1"], t["ci"])]
    return lines


def stopping_note(runs: list[dict[str, Any]]) -> str:
    """How the runs' training ended: by early stopping on the validation loss (the paper) or at the epoch cap."""
    ends = Counter(str(r.get("stopped_by") or "unrecorded") for r in runs)
    if not runs:
        return ""
    parts = [f"{ends[k]} of {len(runs)} by early stopping" if k == "early_stopping" else
             f"{ends[k]} at the epoch cap (trainer.max_epochs)" if k == "max_epochs" else
             f"{ends[k]} {k}" for k in ("early_stopping", "max_epochs", "not trained", "unrecorded") if ends[k]]
    return "Training ended: " + ", ".join(parts) + "."


def _markdown(sweep: Sweep, baselines: Baselines, sites_ok: bool, data_note: str, data: dict[str, Any],
              figures: dict[str, Path], panels: dict[str, Path], claims: list[Claim],
              augmentations: list[aug.AugmentRow] | None = None) -> str:
    runs = sweep.runs
    inputs = sweep.axes.get("inputs", [])
    asked = f"; input sets {', '.join(inputs)}" if len(inputs) > 1 else ""
    lines = [f"# Sweep report: `{sweep.root}`", "",
             f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from **{len(runs)} complete run(s)** in "
             f"{len({run_key(r) for r in runs})} of {len(sweep.expected)} expected cell(s) "
             f"(models {', '.join(sweep.axes['model'])}; windows "
             f"{', '.join(map(str, sweep.axes['window']))} px; scenarios {', '.join(sweep.axes['scenario'])}{asked}). "
             f"Sum of run wall times: {sum(float(r.get('wall_time_s') or 0) for r in runs) / 60:.1f} min. "
             f"{stopping_note(runs)} Every run and test area, as fractions: [runs.csv](runs.csv).", "",
             "## Missing runs", ""]
    lines += _missing_section(sweep)
    lines += ["", "## Results per scenario", "",
              "Precision (P), recall (R) and F1 in percent on each site's held-out test area and on all test areas "
              "pooled, as in the paper's Tables 4-7. " + seeds_note(runs) + " Per cell and test area, as fractions: "
              "[summary.csv](summary.csv).", "",
              scenario_tables(runs, baselines.labelled())]
    lines += extra_section(runs) + ["## Rule baselines (NDVI + slope, rdNDVI + slope)", ""]
    lines += _baseline_section(runs, baselines, sites_ok, data_note) + [""]
    lines += claims_section(claims, len(seeds_of(runs))) + [""]
    if "input_sets" in data:
        lines += _input_sets_section(runs, data["input_sets"], figures["input_sets_mean_f1"])
    if augmentations:
        lines += augmentations_section(augmentations, figures["augmentations_mean_f1"])
    lines += _figure_sections(runs, data, figures)
    lines += ["", "## Prediction maps (paper Figs. 6-9)", ""]
    if panels:
        lines += ["Each test area as predicted by every model (rows; one per input set when several) and window "
                  "(columns), trained on that site (or on all sites when the sweep has no such scenario): green TP, "
                  "red FP, blue FN, grey TN.", ""]
        lines += [f"![{area}]({path.name})\n" for area, path in panels.items()]
    else:
        lines.append(f"Not drawn: {'no run wrote prediction maps' if sites_ok else data_note}.")
    return "\n".join(lines) + "\n"


CSV_FILES = {"runs": "runs.csv", "summary": "summary.csv", "baseline": "baseline.csv", "input_sets": "input_sets.csv",
             "augmentations": "augmentations.csv", "claims": "claims.csv"}
"""The report's tables that are also CSV files (baseline.csv only when the rule baselines were computed); every
table goes to W&B when a run is active."""

Table = tuple[tuple[str, ...] | list[str], list[list[Any]]]
"""(columns, rows)."""


def log_to_wandb(tables: dict[str, Table], images: dict[str, Path]) -> bool:
    """Log tables and figures to the active W&B run, if any (never starts one); True when logged."""
    wandb = sys.modules.get("wandb")  # no run can be active in a process that never imported wandb
    if wandb is None or getattr(wandb, "run", None) is None:
        return False
    payload: dict[str, Any] = {f"report/{k}": wandb.Table(columns=list(c), data=r) for k, (c, r) in tables.items()}
    payload.update({f"report/{k}": wandb.Image(str(p), caption=k.replace("_", " ")) for k, p in images.items()})
    wandb.run.log(payload)
    return True


def check_out_dir(out: Path, sweep: Sweep) -> None:
    """Refuse an output folder whose replacement would delete runs or anything but an earlier report."""
    target = out.resolve()
    jobs = [Path(r["dir"]).resolve() for r in sweep.runs] + [sweep.root.resolve()]
    if any(job == target or job.is_relative_to(target) for job in jobs):
        raise InputError(out, "the report folder would hold the sweep's runs; choose another --out")
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / "report.md").exists())):
        raise InputError(out, "exists and is not an earlier report (no report.md); refusing to replace it")
    check_replaceable(out, ("report.md", "*.csv", "*.png", "figures.json"), "slidemap report")


def report_tables(sweep: Sweep, data: dict[str, Any], claims: list[Claim], baselines: Baselines,
                  augmentations: list[Any]) -> dict[str, Table]:
    """Every table of the report, built once for its CSV file and for W&B."""
    tables: dict[str, Table] = {
        "runs": (RUN_COLUMNS, run_rows(sweep)), "summary": summary_with_extra(sweep.runs),
        "claims": (CLAIMS_COLUMNS, [c.row() for c in claims]), "baseline": (BASELINE_COLUMNS, baseline_rows(baselines)),
        "missing": (("job", "status"), [list(m) for m in sweep.missing()]),
        "mean_f1": (("model", "scenario", "window", "mean_f1"),
                    [[m, s, w, None if math.isnan(v) else v] for m, per_s in data["window_scenario"].items()
                     for s, per_w in per_s.items() for w, v in per_w.items()]),
        **{f"scenario_{s}": wide_table(sweep.runs, s) for s in data["scenario_model"]}}
    if "input_sets" in data:
        tables["input_sets"] = (INPUT_SET_COLUMNS, input_set_rows(data["input_sets"]))
    if augmentations:
        tables["augmentations"] = (AUGMENT_COLUMNS, aug.csv_rows(augmentations))
    return tables


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write report.md, runs.csv, summary.csv, claims.csv, baseline.csv, figures.json and the PNGs into ``out_dir``
    (default SWEEP_DIR/report), replacing it atomically; returns the path of report.md.

    A sweep over several input sets also gets input_sets.csv and input_sets_mean_f1.png (its own section); one over
    several augmentations also augmentations.csv and augmentations_mean_f1.png (section "Augmentations")."""
    start = time.perf_counter()
    root = Path(sweep_dir)
    if not root.is_dir():
        raise InputError(root, "sweep folder not found")
    sweep = scan_sweep(root)
    if not sweep.runs:
        why = "; ".join(f"{job}: {reason}" for job, reason in list(sweep.missing())[:3])
        raise InputError(root, f"no complete run (no metrics.json with test results) among {len(sweep.incomplete)} "
                               "job folder(s); is this a multirun/<date>/<time> folder of a sweep that has run?"
                               + (f" First: {why}" if why else ""))
    log.info("%d complete run(s), %d missing, read in %.2f s", len(sweep.runs), len(sweep.missing()),
             time.perf_counter() - start)
    t = time.perf_counter()
    sites, splits, data_note = load_sites(sweep.runs)
    baselines = baseline_for(sweep.runs, sites, splits)
    log.info("sites and rule baselines in %.2f s (%s)", time.perf_counter() - t,
             ", ".join(baselines.rules) if baselines.rules else data_note)
    out = Path(out_dir) if out_dir is not None else root / "report"
    check_out_dir(out, sweep)
    data = fig.figure_data(paper_runs(sweep.runs))
    claims = judge_claims(sweep.runs, baselines.rules)
    if len(input_sets(sweep.runs)) > 1:
        data["input_sets"] = fig.input_set_data(sweep.runs, baselines.labelled())
    augmentations = aug.augment_rows(sweep.runs) if len({aug.augment_of(r) for r in sweep.runs}) > 1 else []
    if augmentations:
        data["augmentations"] = aug.figure_data(augmentations)
    tables = report_tables(sweep, data, claims, baselines, augmentations)
    try:
        with atomic_dir(out) as tmp:
            t = time.perf_counter()
            for name, file in CSV_FILES.items():
                if name in tables and (name != "baseline" or baselines.rules):
                    _write_csv(tmp / file, *tables[name])
            (tmp / "figures.json").write_text(json.dumps(_no_nan(data), indent=2) + "\n")
            figures = {k: plot(data, tmp / name) for k, (name, plot) in FIGURES.items()}
            if "input_sets" in data:
                figures["input_sets_mean_f1"] = fig.plot_input_sets(data["input_sets"], tmp / INPUT_SET_FIGURE)
            if augmentations:
                figures["augmentations_mean_f1"] = fig.plot_augmentations(data["augmentations"], tmp / AUGMENT_FIGURE)
            panels = prediction_panels(sweep.runs, sites, splits, tmp)
            (tmp / "report.md").write_text(_markdown(sweep, baselines, bool(sites), data_note, data, figures, panels,
                                                     claims, augmentations) + write_reliability(sweep.runs, tmp))
            log.info("tables and %d figure(s) written in %.2f s", len(figures) + len(panels), time.perf_counter() - t)
    except PermissionError as err:
        raise InputError(out, f"cannot write the report: {err.strerror}") from err
    images = {k: out / p.name for k, p in figures.items()} | {f"predictions_{a}": out / p.name
                                                              for a, p in panels.items()}
    if log_to_wandb(tables, images):
        log.info("report tables and figures logged to the active W&B run")
    log.info("report of %s written to %s in %.1f s", root, out, time.perf_counter() - start)
    return out / "report.md"
