"""Issue 8's honesty checks on an input-set sweep, from its report's CSVs (runs.csv, baseline.csv).

    python train.py -m model=unet,resunet window=64 scenario=all,taiwan,china,japan inputs=post,prepost,change
    slidemap report multirun/<date>/<time>
    python benchmarks/input_sets.py multirun/<date>/<time>/report

Prints own-site / transfer F1 per input set and model, the rules next to them, and each check with its numbers
(or why it cannot be measured: a missing run, no rdNDVI rule). A check is a measurement on one sweep (one seed,
one window), not a test: the synthetic data must make them hold, not the code.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from statistics import mean

SITES = ("taiwan", "china", "japan")
INPUT_SETS = ("post", "prepost", "change")
Key = tuple[str, str, str, str]  # (model or rule-<method>, inputs, training scenario, test area)


def read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def load(report_dir: Path) -> dict[Key, float]:
    """F1 (%) per model x inputs x scenario x area; refuses sweeps with several windows or seeds per cell."""
    runs = read(report_dir / "runs.csv")
    if not runs:
        sys.exit(f"{report_dir / 'runs.csv'}: not found or empty; run `slidemap report SWEEP_DIR` first")
    for column in ("window", "seed"):
        values = {r[column] for r in runs}
        if len(values) > 1:
            sys.exit(f"{report_dir / 'runs.csv'}: runs of several {column}s ({', '.join(sorted(values))}); these "
                     f"checks compare one {column}: report a sweep of one")
    f1 = {(r["model"], r["inputs"], r["scenario"], r["area"]): 100 * float(r["f1"]) for r in runs}
    for r in read(report_dir / "baseline.csv"):
        f1[(f"rule-{r['method']}", "-", r["scenario"], r["area"])] = 100 * float(r["f1"])
    return f1


def own_and_transfer(f1: dict[Key, float], model: str, inputs: str) -> tuple[list[float], list[float]] | None:
    """Own-site F1 per site and the six transfer F1s, or None when a run is missing."""
    own = [f1.get((model, inputs, s, s)) for s in SITES]
    transfer = [f1.get((model, inputs, s, t)) for s in SITES for t in SITES if s != t]
    if None in own or None in transfer:
        return None
    return own, transfer  # type: ignore[return-value]


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir", type=Path)
    f1 = load(parser.parse_args().report_dir)
    rows = sorted({(m, i) for m, i, _, _ in f1}, key=lambda k: (k[0].startswith("rule"), k[0], k[1]))

    print("| model | inputs | own-site F1 (taiwan, china, japan) | mean own | mean transfer | own - transfer |")
    print("|---|---|---|--:|--:|--:|")
    own_mean: dict[tuple[str, str], float] = {}
    for model, inputs in rows:
        got = own_and_transfer(f1, model, inputs)
        if got is None:
            print(f"| {model} | {inputs} | a run or test area is missing | | | |")
            continue
        own, transfer = got
        own_mean[(model, inputs)] = mean(own)
        print(f"| {model} | {inputs} | {', '.join(f'{v:.1f}' for v in own)} | {mean(own):.1f} | "
              f"{mean(transfer):.1f} | {mean(own) - mean(transfer):+.1f} |")

    print("\nChecks (issue 8):")
    by_inputs = {i: [v for (m, k), v in own_mean.items() if k == i and not m.startswith("rule")] for i in INPUT_SETS}
    if by_inputs["post"] and (by_inputs["prepost"] or by_inputs["change"]):
        post = mean(by_inputs["post"])
        best = max((i for i in ("prepost", "change") if by_inputs[i]), key=lambda i: mean(by_inputs[i]))
        gain = mean(by_inputs[best]) - post
        print(f"- {best} beats post by >= 5 F1 over own-site tests: {mean(by_inputs[best]):.1f} vs {post:.1f} "
              f"({gain:+.1f}) -> {verdict(gain >= 5)}")
    else:
        print("- two-date vs post inputs: not measurable (no complete post run, or no complete prepost/change run)")
    for site in SITES:
        unet, rule = f1.get(("unet", "change", site, site)), f1.get(("rule-rdndvi", "-", site, site))
        if unet is None or rule is None:
            print(f"- U-Net change vs the rdNDVI rule on {site}: not measurable ("
                  f"{'no unet change run trained on ' + site if unet is None else 'no rdNDVI rule in baseline.csv'})")
            continue
        print(f"- U-Net change beats the rdNDVI rule by >= 10 on {site}: {unet:.1f} vs {rule:.1f} "
              f"({unet - rule:+.1f}) -> {verdict(unet - rule >= 10)}")
    rdndvi = [(s, a, v) for (m, _, s, a), v in f1.items() if m == "rule-rdndvi"]
    if rdndvi:
        worst = max(rdndvi, key=lambda t: t[2])
        print(f"- rdNDVI rule <= 70 F1 on every test area: max {worst[2]:.1f} (tuned on {worst[0]}, tested on "
              f"{worst[1]}) -> {verdict(worst[2] <= 70)}")
    else:
        print("- rdNDVI rule <= 70 F1: not measurable (no rdNDVI rule in baseline.csv: sites without s2_pre.tif?)")
    for inputs in INPUT_SETS:
        cost = [mean(o) - mean(t) for m in ("unet", "resunet") if (got := own_and_transfer(f1, m, inputs))
                for o, t in [got]]
        if cost:
            print(f"- transfer costs F1 with {inputs} inputs: own - transfer = {', '.join(f'{c:+.1f}' for c in cost)}"
                  f" -> {verdict(min(cost) > 0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
