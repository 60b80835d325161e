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
import json
import math
import statistics
from pathlib import Path

from scipy.stats import t

AUGMENTS = ("none", "d4", "offsets", "full")


def interval(xs: list[float]) -> tuple[float, float, float]:
    """Mean, sample sd and the half-width of the 95% t-interval (NaN for fewer than two values)."""
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, math.nan, math.nan
    sd = statistics.stdev(xs)
    return m, sd, t.ppf(0.975, len(xs) - 1) * sd / math.sqrt(len(xs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", type=Path)
    args = p.parse_args()
    runs = [json.loads(f.read_text()) for f in sorted(args.sweep.glob("*/metrics.json"))]
    runs = [r for r in runs if r["scenario"] != "all"]
    key = {(r.get("augment", "none"), r["scenario"], r["seed"]): r for r in runs}
    own = {k: r["areas"][r["scenario"]]["f1"] for k, r in key.items()}
    off = {k: statistics.mean(m["f1"] for a, m in r["areas"].items() if a not in ("all", r["scenario"]))
           for k, r in key.items()}
    augments = [a for a in AUGMENTS if any(k[0] == a for k in key)]
    scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
    seeds = sorted({k[2] for k in key})
    ends = {s: sum(r.get("stopped_by") == s for r in runs) for s in ("early_stopping", "max_epochs")}
    print(f"{len(runs)} runs; ended by {ends}\n")
    print("| augment | scenario | own-site F1 mean ± 95% CI (sd) | transfer F1 mean ± 95% CI (sd) | epochs |")
    print("|---|---|--:|--:|--:|")
    for a in augments:
        for s in scenarios:
            picked = [k for k in key if k[:2] == (a, s)]
            if not picked:
                continue
            (m, sd, h), (m2, sd2, h2) = interval([own[k] for k in picked]), interval([off[k] for k in picked])
            epochs = [key[k]["epochs"] for k in picked]
            print(f"| {a} | {s} | {100 * m:.1f} ± {100 * h:.1f} ({100 * sd:.1f}) | {100 * m2:.1f} ± {100 * h2:.1f} "
                  f"({100 * sd2:.1f}) | {min(epochs)}-{max(epochs)} |")
    print("\n| augment | own-site F1, all scenarios | minus none, paired | transfer F1 | minus none, paired |")
    print("|---|--:|--:|--:|--:|")
    fmt = lambda xs: "%.1f ± %.1f" % (100 * interval(xs)[0], 100 * interval(xs)[2])  # noqa: E731
    for a in augments:
        cells = [(a, s, k) for s in scenarios for k in seeds if (a, s, k) in key]
        pairs = [c for c in cells if ("none", *c[1:]) in key]
        diff_own = [own[c] - own[("none", *c[1:])] for c in pairs]
        diff_off = [off[c] - off[("none", *c[1:])] for c in pairs]
        print(f"| {a} (n={len(cells)}) | {fmt([own[c] for c in cells])} | {fmt(diff_own) if a != 'none' else '–'} "
              f"| {fmt([off[c] for c in cells])} | {fmt(diff_off) if a != 'none' else '–'} |")


if __name__ == "__main__":
    main()
