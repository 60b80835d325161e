"""Issue 8's honesty checks on an input-set sweep, from its report's CSVs (runs.csv, baseline.csv).

    python train.py -m model=unet,resunet window=64 scenario=all,taiwan,china,japan inputs=post,prepost,change
    slidemap report multirun/<date>/<time>
    python benchmarks/input_sets.py multirun/<date>/<time>/report

Prints own-site / transfer F1 per input set and model, the rules next to them, and each check with its numbers.
A check is a measurement on one sweep (one seed), not a test: the synthetic data must make them hold, not the code.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path
from statistics import mean

SITES = ("taiwan", "china", "japan")


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir", type=Path)
    args = parser.parse_args()
    runs = read(args.report_dir / "runs.csv")
    rules = read(args.report_dir / "baseline.csv")
    f1: dict[tuple[str, str, str, str], float] = {}  # (model, inputs, scenario, area) -> F1 in %
    for r in runs:
        f1[(r["model"], r["inputs"], r["scenario"], r["area"])] = 100 * float(r["f1"])
    for r in rules:
        f1[(f"rule-{r['method']}", "-", r["scenario"], r["area"])] = 100 * float(r["f1"])
    rows = sorted({(m, i) for m, i, _, _ in f1}, key=lambda k: (k[0].startswith("rule"), k[0], k[1]))

    print("| model | inputs | own-site F1 (taiwan, china, japan) | mean own | mean transfer | own - transfer |")
    print("|---|---|---|--:|--:|--:|")
    own_mean: dict[tuple[str, str], float] = {}
    for model, inputs in rows:
        own = [f1.get((model, inputs, s, s)) for s in SITES]
        transfer = [f1.get((model, inputs, s, t)) for s in SITES for t in SITES if s != t]
        if None in own or None in transfer:
            continue
        own_mean[(model, inputs)] = mean(own)
        print(f"| {model} | {inputs} | {', '.join(f'{v:.1f}' for v in own)} | {mean(own):.1f} | "
              f"{mean(transfer):.1f} | {mean(own) - mean(transfer):+.1f} |")

    print("\nChecks (issue 8):")
    by_inputs: dict[str, list[float]] = defaultdict(list)
    for (model, inputs), value in own_mean.items():
        if not model.startswith("rule"):
            by_inputs[inputs].append(value)
    post = mean(by_inputs["post"])
    best = max(("prepost", "change"), key=lambda i: mean(by_inputs[i]))
    gain = mean(by_inputs[best]) - post
    print(f"- {best} beats post by >= 5 F1 over own-site tests: {mean(by_inputs[best]):.1f} vs {post:.1f} "
          f"({gain:+.1f}) -> {'met' if gain >= 5 else 'NOT met'}")
    for site in SITES:
        unet, rule = f1.get(("unet", "change", site, site)), f1.get(("rule-rdndvi", "-", site, site))
        if unet is not None and rule is not None:
            print(f"- U-Net change beats the rdNDVI rule by >= 10 on {site}: {unet:.1f} vs {rule:.1f} "
                  f"({unet - rule:+.1f}) -> {'met' if unet - rule >= 10 else 'NOT met'}")
    rdndvi = [(s, a, v) for (m, _, s, a), v in f1.items() if m == "rule-rdndvi"]
    worst = max(rdndvi, key=lambda t: t[2])
    print(f"- rdNDVI rule <= 70 F1 on every test area: max {worst[2]:.1f} (tuned on {worst[0]}, tested on {worst[1]}) "
          f"-> {'met' if worst[2] <= 70 else 'NOT met'}")
    for inputs in ("post", "prepost", "change"):
        cost = [mean([f1[(m, inputs, s, s)] for s in SITES]) - mean([f1[(m, inputs, s, t)] for s in SITES
                                                                      for t in SITES if s != t])
                for m in ("unet", "resunet") if (m, inputs) in own_mean]
        if cost:
            print(f"- transfer costs F1 with {inputs} inputs: own - transfer = {', '.join(f'{c:+.1f}' for c in cost)}"
                  f" -> {'met' if min(cost) > 0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
