"""A search sweep's report: its trials (validation F1, settings), the best, and that best rerun over seeds.

A search (``python train.py -m search=...``, :mod:`slidemap.search`) picks settings on the validation F1 of one seed;
a claim needs more. The report prints one command that reruns the best trial's settings and the default
configuration over the same seeds (two members of the config group ``trial`` it writes to SWEEP/rerun/trial/, run
into SWEEP/seeds); once those runs exist, it compares them on every test area: each side's mean F1 with its 95%
t-interval over seeds, and best minus default paired by seed, with its interval and verdict.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import yaml

from slidemap.errors import InputError
from slidemap.io import atomic_dir, atomic_path, write_json
from slidemap.reporting.claims import compare
from slidemap.reporting.stats import Interval, bounded, t_interval, verdict
from slidemap.reporting.tables import pct_interval
from slidemap.runs import SEARCH_FILE

RERUN_DIR = "rerun"
SEEDS_DIR = "seeds"
ARMS = ("best", "default")
SEEDS = (0, 1, 2)
CONF = Path(__file__).resolve().parents[3] / "conf"
"""This source tree's config folder: which override keys are config groups (``augment=d4``)."""


def is_search(sweep_dir: str | Path) -> bool:
    """Whether ``sweep_dir`` holds a search (its ``search.json``)."""
    return (Path(sweep_dir) / SEARCH_FILE).is_file()


def read_search(sweep_dir: Path) -> dict[str, Any]:
    """``search.json``, refused in one line when unreadable."""
    path = sweep_dir / SEARCH_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(path, f"unreadable search record ({type(err).__name__})") from err
    if not isinstance(record, dict) or not isinstance(record.get("trials"), list):
        raise InputError(path, "not a search record (no trials)")
    return record


def trial_config(params: dict[str, Any], conf: Path = CONF) -> str:
    """A ``@package _global_`` config applying ``params``: a config group's choice as a defaults override, any
    other key as a nested value."""
    groups, values = [], {}  # type: ignore[var-annotated]
    for key, value in params.items():
        name = key.lstrip("+")
        if "." not in name and (conf / name).is_dir():
            groups.append({f"override /{name}": value})
            continue
        node = values
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    body = ({"defaults": groups} if groups else {}) | values
    return "# @package _global_\n" + (yaml.safe_dump(body, sort_keys=False) if body else "")


def rerun_command(sweep_dir: Path, record: dict[str, Any], seeds: tuple[int, ...] = SEEDS) -> str:
    """``python train.py -m ...``: the best trial's settings and the default, over ``seeds``, into SWEEP/seeds,
    with the search's own fixed overrides (data, model, epochs...) but not the search itself."""
    fixed = [f"{k}={v}" for k, v in (record.get("fixed") or {}).items() if k.lstrip("+") != "search"]
    root = sweep_dir.resolve()
    return " ".join(["python train.py -m", f"'hydra.searchpath=[file://{root / RERUN_DIR}]'",
                     f"+trial={','.join(reversed(ARMS))}", f"seed={','.join(map(str, seeds))}",
                     f"hydra.sweep.dir={root / SEEDS_DIR}", *fixed])


def write_trial_configs(sweep_dir: Path, best: dict[str, Any]) -> None:
    """SWEEP/rerun/trial/best.yaml (the best trial's settings) and default.yaml (none), for the rerun command."""
    folder = sweep_dir / RERUN_DIR / "trial"
    folder.mkdir(parents=True, exist_ok=True)
    for name, params in (("best", best["params"]), ("default", {})):
        with atomic_path(folder / f"{name}.yaml") as tmp:
            tmp.write_text(trial_config(params))


def seed_runs(sweep_dir: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """The rerun's complete runs per arm and seed (from each run's metrics.json and its ``+trial=`` override)."""
    runs: dict[str, dict[int, dict[str, Any]]] = {arm: {} for arm in ARMS}
    folder = sweep_dir / SEEDS_DIR
    for metrics in sorted(folder.glob("*/metrics.json")) if folder.is_dir() else []:
        try:
            run = json.loads(metrics.read_text())
        except (OSError, ValueError):
            continue
        arms = [o.split("=", 1)[1] for o in run.get("overrides") or [] if o.lstrip("+").startswith("trial=")]
        if arms and arms[0] in runs:
            runs[arms[0]][int(run.get("seed", 0))] = run
    return runs


def comparison_rows(runs: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per test area: each arm's F1 over seeds and best minus default paired by seed (fractions)."""
    areas = sorted({a for arm in runs.values() for r in arm.values() for a in r.get("areas", {})},
                   key=lambda a: (a == "all", a))
    rows = []
    for area in areas:
        sample = {arm: [(seed, float(r["areas"][area]["f1"])) for seed, r in sorted(runs[arm].items())
                        if area in r.get("areas", {})] for arm in ARMS}
        diff, how, why = compare(sample["best"], sample["default"], "best", "default", "seed")
        rows.append({"area": area, **{arm: t_interval([v for _, v in sample[arm]]) for arm in ARMS},
                     "diff": diff, "how": how, "why": why})
    return rows


def _cell(interval: Interval) -> str:
    if interval.n == 0:
        return "–"
    s = bounded(interval)
    return f"{pct_interval(s.mean, s.low, s.high)} (n={s.n})"


def _trial_lines(record: dict[str, Any]) -> list[str]:
    space = list(record.get("space") or sorted({k for t in record["trials"] for k in t.get("params", {})}))
    lines = ["| trial | state | val F1 | " + " | ".join(f"`{k}`" for k in space) + " | run folder |",
             "|--:|---|--:|" + "---|" * len(space) + "---|"]
    for t in record["trials"]:
        state = "interrupted (asked again)" if t.get("interrupted") else t["state"]
        value = "–" if t.get("value") is None else f"{100 * t['value']:.2f}"
        params = [str(t.get("params", {}).get(k, "")) for k in space]
        lines.append(f"| {t['number']} | {state} | {value} | " + " | ".join(params) + f" | {t.get('run_dir') or ''} |")
    return lines


def search_markdown(sweep_dir: Path, record: dict[str, Any]) -> str:
    """report.md of a search sweep."""
    trials = record["trials"]
    count = {s: sum(t["state"] == s and not t.get("interrupted") for t in trials) for s in ("complete", "fail")}
    best = record.get("best")
    lines = [f"# Search report: `{sweep_dir}`", "",
             f"Study `{record.get('study')}` ({record.get('direction', 'maximize')} the validation F1 of each trial's "
             f"best checkpoint; test areas are never looked at while searching): {count['complete']} of "
             f"{record.get('n_trials')} trials complete, {count['fail']} failed. Every trial: "
             "[trials.csv](trials.csv).", "", "## Trials", ""] + _trial_lines(record) + ["", "## Best trial", ""]
    if best is None:
        return "\n".join(lines + ["No trial completed yet: nothing to rerun."]) + "\n"
    settings = " ".join(f"{k}={v}" for k, v in best["params"].items())
    lines += [f"Trial {best['number']}: validation F1 {100 * best['value']:.2f} with `{settings}` "
              f"(run folder `{best.get('run_dir')}`).", "",
              "## Best over seeds", "",
              "One seed's validation F1 picked these settings, so the search's best is optimistic. This command "
              "reruns them (`+trial=best`) and the default configuration (`+trial=default`) over the same seeds; "
              f"the settings are in `{RERUN_DIR}/trial/best.yaml`. Then `slidemap report {sweep_dir}` again compares "
              "them on the test areas:", "", "```", rerun_command(sweep_dir, record), "```", ""]
    runs = seed_runs(sweep_dir)
    if not any(runs.values()):
        return "\n".join(lines + ["No rerun yet (no complete run in `seeds/`)."]) + "\n"
    lines += ["Test F1 (%) per test area over seeds: mean ± half-width of the 95% t-interval (n seeds); "
              "best minus default paired by seed, ± its half-width, and whether its interval excludes 0.", "",
              "| test area | default | best | best − default | verdict |", "|---|--:|--:|--:|---|"]
    for row in comparison_rows(runs):
        d: Interval = row["diff"]
        diff = "–" if d.n == 0 or math.isnan(d.mean) else pct_interval(d.mean, d.low, d.high)
        judged = (verdict(d) if d.has_interval else f"none ({row['why']})") if d.n else "none"
        lines.append(f"| {row['area']} | {_cell(row['default'])} | {_cell(row['best'])} | {diff} | {judged} |")
    return "\n".join(lines) + "\n"


def write_search_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """report.md and trials.csv of a search sweep into ``out_dir`` (default SWEEP/report), replaced atomically; the
    rerun's trial configs into SWEEP/rerun/trial/. Returns the path of report.md."""
    root = Path(sweep_dir)
    record = read_search(root)
    if record.get("best"):
        write_trial_configs(root, record["best"])
    out = Path(out_dir) if out_dir is not None else root / "report"
    space = list(record.get("space") or [])
    with atomic_dir(out) as tmp:
        (tmp / "report.md").write_text(search_markdown(root, record))
        with open(tmp / "trials.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["trial", "state", "val_f1", *space, "run_dir"])
            for t in record["trials"]:
                state = "interrupted" if t.get("interrupted") else t["state"]
                writer.writerow([t["number"], state, t.get("value"), *(t["params"].get(k) for k in space),
                                 t.get("run_dir")])
        write_json(tmp / "search.json", record)
    return out / "report.md"
