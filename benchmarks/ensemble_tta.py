"""Do an ensemble of seeds and test-time views beat one model? F1, ECE and time of eval.py (issue 15, item 4).

Every variant is one ``python eval.py`` run (as a user runs it) on the seeds of one sweep cell: each seed alone
(raw sigmoid and calibrated; with flips and d4 views), and all seeds together (raw and calibrated; with flips and
d4). The table gives F1 and ECE on the cell's own test area and on all test areas pooled, the mean per-pixel
standard deviation on the own area, and eval.py's wall time (``wall_time_s``: reading, mapping, writing, scoring;
not the interpreter start). Single-seed rows are the mean over seeds (min-max in brackets).

    python benchmarks/ensemble_tta.py SWEEP_DIR --data-dir DATA_DIR [--scenario taiwan] [--own-site-only]
                                      [--tta-seeds N] [--out DIR]

``--own-site-only`` maps only the scenario's own site (``data.sites=[taiwan]``: its training area alone gives the
checkpoint's normaliser, so the check still holds), ``--tta-seeds N`` runs the single-model views on the first N
seeds only: both to fit a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SINGLE = [("1 model, raw sigmoid", "none", False), ("1 model, calibrated", "none", True),
          ("1 model + flips", "flips", True), ("1 model + d4", "d4", True)]
ENSEMBLE = [("seeds ensemble, raw sigmoid", "none", False), ("seeds ensemble, calibrated", "none", True),
            ("seeds ensemble + flips", "flips", True), ("seeds ensemble + d4", "d4", True)]
VIEWS = {"none": 1, "flips": 4, "d4": 8}


def checkpoints(sweep: Path) -> list[tuple[int, Path]]:
    """(seed, best.ckpt) of every complete run under ``sweep``, by seed."""
    found = []
    for metrics in sweep.glob("*/metrics.json"):
        record = json.loads(metrics.read_text())
        found.append((int(record["seed"]), metrics.parent / "checkpoints" / "best.ckpt"))
    return sorted(found)


def evaluate(ckpts: list[Path], tta: str, calibrated: bool, out: Path, args: argparse.Namespace) -> dict | None:
    """One eval.py run; returns its metrics.json (reused when ``out`` already holds one; None when missing and
    ``--existing-only``)."""
    if not (out / "metrics.json").exists():
        if args.existing_only:
            return None
        quoted = ",".join(f"'{c}'" for c in ckpts)  # quoted: a sweep's folder names hold '='
        cmd = [sys.executable, str(REPO / "eval.py"), f"ckpt_path=[{quoted}]", f"tta={tta}",
               f"calibrated={str(calibrated).lower()}", f"scenario={args.scenario}",
               f"paths.data_dir={args.data_dir}", f"hydra.run.dir={out}"]
        if args.own_site_only:
            cmd.append(f"data.sites=[{args.scenario}]")
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"eval.py failed: {shlex.join(cmd)}\n{done.stderr[-2000:]}")
    return json.loads((out / "metrics.json").read_text())


def cells(records: list[dict], own: str, pooled: bool = True) -> list[str]:
    """The table cells of one variant: mean over ``records`` (min-max when several)."""
    def stat(values: list[float], scale: float, fmt: str) -> str:
        if not values or any(v is None for v in values):
            return "–"
        mean = statistics.fmean(values) * scale
        if len(values) == 1:
            return format(mean, fmt)
        return f"{format(mean, fmt)} ({format(min(values) * scale, fmt)}-{format(max(values) * scale, fmt)})"

    def get(area: str, key: str) -> list[float]:
        return [r["areas"][area].get(key) for r in records]

    f1 = [stat(get(own, "f1"), 100, ".2f")] + ([stat(get("all", "f1"), 100, ".2f")] if pooled else [])
    ece = [stat(get(own, "ece"), 100, ".2f")] + ([stat(get("all", "ece"), 100, ".2f")] if pooled else [])
    times = [r["wall_time_s"] for r in records]
    return [*f1, *ece, stat(get(own, "mean_uncertainty"), 1, ".4f"), stat(times, 1, ".1f")]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path, help="a sweep of one cell over seeds (e.g. seed=0,1,2)")
    p.add_argument("--data-dir", required=True, help="paths.data_dir the sweep trained with")
    p.add_argument("--scenario", default="taiwan")
    p.add_argument("--own-site-only", action="store_true", help="map and score only the scenario's own site")
    p.add_argument("--tta-seeds", type=int, default=None, help="single-model flips/d4 on the first N seeds only")
    p.add_argument("--existing-only", action="store_true", help="tabulate the eval runs already in --out, run none")
    p.add_argument("--out", type=Path, default=None, help="where the eval runs go (default SWEEP_DIR/ensemble_tta)")
    args = p.parse_args(argv)
    out = args.out or args.sweep_dir / "ensemble_tta"
    seeds = checkpoints(args.sweep_dir)
    if not seeds:
        raise SystemExit(f"{args.sweep_dir}: no complete run (metrics.json + checkpoints/best.ckpt)")
    print("$ python benchmarks/ensemble_tta.py " + shlex.join(argv if argv is not None else sys.argv[1:]))
    own = args.scenario
    rows = []
    for name, tta, calibrated in SINGLE:
        chosen = seeds if tta == "none" or args.tta_seeds is None else seeds[:args.tta_seeds]
        found = [(s, evaluate([c], tta, calibrated, out / f"seed{s}-{tta}-{'cal' if calibrated else 'raw'}", args))
                 for s, c in chosen]
        chosen = [(s, c) for (s, c), (_, r) in zip(chosen, found) if r is not None]
        records = [r for _, r in found if r is not None]
        if not records:
            continue
        label = name if len(chosen) == len(seeds) else f"{name} (seed {', '.join(str(s) for s, _ in chosen)})"
        rows.append([label, str(VIEWS[tta]), *cells(records, own, not args.own_site_only)])
    for name, tta, calibrated in ENSEMBLE:
        folder = out / f"ensemble-{tta}-{'cal' if calibrated else 'raw'}"
        record = evaluate([c for _, c in seeds], tta, calibrated, folder, args)
        if record is None:
            continue
        rows.append([name.replace("seeds", f"{len(seeds)} seeds"), str(len(seeds) * VIEWS[tta]),
                     *cells([record], own, not args.own_site_only)])
    print(f"\nSeeds {', '.join(str(s) for s, _ in seeds)}; own test area: {own}; ECE: 15 bins, valid pixels.\n")
    pooled = "" if args.own_site_only else " F1 all (%) |"
    print(f"| variant | predictions per pixel | F1 {own} (%) |{pooled} ECE {own} (%) |{pooled.replace('F1', 'ECE')} "
          f"mean sd {own} | eval time (s) |")
    print("|---|--:|--:|--:|--:|--:|" + ("" if args.own_site_only else "--:|--:|"))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
