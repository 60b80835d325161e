"""Augmentations compared from a finished sweep (issue 17): own-site and transfer F1 per augmentation and scenario.

    python train.py -m model=unet window=64 scenario=taiwan,china,japan augment=none,d4,offsets,full seed=0,1,2 \\
        logger=none hydra.sweep.dir=SWEEP
    python benchmarks/augmentations.py SWEEP

Own-site F1: on the trained site's test area; transfer F1: the mean over the other sites' test areas. Intervals:
95% Student-t over seeds; the pooled table pairs each augmented run with the un-augmented run of the same scenario
and seed. Prints two Markdown tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slidemap.reporting.augmentations import AugmentRow, augment_rows, augments, pooled, pooled_difference
from slidemap.reporting.stats import Interval
from slidemap.reporting.sweep import MODEL_ORDER, load_runs, ordered


def _cell(i: Interval) -> str:
    """``mean ± half-width (sd)`` in percent (NaN where one seed gives no spread)."""
    return f"{100 * i.mean:.1f} ± {100 * i.half_width:.1f} ({100 * i.sd:.1f})"


def _short(i: Interval) -> str:
    return f"{100 * i.mean:.1f} ± {100 * i.half_width:.1f}"


def _name(row: AugmentRow, rows: list[AugmentRow]) -> str:
    """The augmentation, with model / window / input set only when the sweep has several."""
    extra = [str(getattr(row, k)) for k in ("model", "window", "inputs") if len({getattr(r, k) for r in rows}) > 1]
    return row.augment + (f" ({', '.join(extra)})" if extra else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", type=Path)
    args = p.parse_args()
    runs = [r for r in load_runs(args.sweep) if r["scenario"] != "all"]
    rows = augment_rows(runs)
    ends = {s: sum(r.get("stopped_by") == s for r in runs) for s in ("early_stopping", "max_epochs")}
    print(f"{len(runs)} runs; ended by {ends}\n")
    print("| augment | scenario | own-site F1 mean ± 95% CI (sd) | transfer F1 mean ± 95% CI (sd) | epochs |")
    print("|---|---|--:|--:|--:|")
    for a in augments(rows):
        for r in (r for r in rows if r.augment == a):
            epochs = f"{min(r.epochs)}-{max(r.epochs)}" if r.epochs else ""
            print(f"| {_name(r, rows)} | {r.scenario} | {_cell(r.stats['own_site_f1'])} | "
                  f"{_cell(r.stats['transfer_f1'])} | {epochs} |")
    models = ordered({r.model for r in rows}, MODEL_ORDER)  # the paper's U-Net first
    print("\n| augment | own-site F1, all scenarios | minus none, paired | transfer F1 | minus none, paired | "
          "seed sd within a cell, own / transfer |")
    print("|---|--:|--:|--:|--:|--:|")
    for model in models:  # pooled per model: a ResU-Net's seeds are no replicates of a U-Net's
        sub = [r for r in rows if r.model == model]
        for a in augments(sub):
            own, off = pooled(sub, a, "own_site_f1"), pooled(sub, a, "transfer_f1")
            diffs = [pooled_difference(sub, a, m) for m in ("own_site_f1", "transfer_f1")]
            d_own, d_off = ("–" if a == "none" else _short(d) for d in diffs)
            sds = [_mean_sd([r for r in sub if r.augment == a], m) for m in ("own_site_f1", "transfer_f1")]
            name = a + (f" ({model})" if len(models) > 1 else "")
            print(f"| {name} (n={own.n}) | {_short(own)} | {d_own} | {_short(off)} | {d_off} | "
                  f"{100 * sds[0]:.1f} / {100 * sds[1]:.1f} |")


def _mean_sd(rows: list[AugmentRow], metric: str) -> float:
    """The mean over cells of the sd over seeds: how far one run of the augmentation may land from another."""
    sds = [r.stats[metric].sd for r in rows if r.stats[metric].n > 1]
    return sum(sds) / len(sds) if sds else float("nan")


if __name__ == "__main__":
    main()
