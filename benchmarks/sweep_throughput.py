"""Sweep-level throughput: runs per hour of a small train.py sweep, with and without each speed-up, in one run
(issue 14, item 6).

A step benchmark (train_throughput.py, seed_batching.py) says how fast one optimiser step is; a sweep also pays
data preparation, validation, early stopping's extra epochs, testing and maps. This script runs the same small
sweep once per variant, one after another (subprocesses, fresh synthetic data cache shared by all), and reports
per variant: wall time, runs per hour, epochs per hour, the median seconds per epoch of a run, and the mean
own-site F1 (a speed-up that changes the trajectory changes the epochs too, so runs/hour alone could mislead).

Variants (``--variants``, default all):
- ``default``: what a plain ``python train.py -m ...`` does today (bf16 autocast where the CPU has bf16 units,
  channels-last, one job at a time with every core);
- ``fp32``: ``trainer.precision=32-true`` (no bf16 autocast);
- ``joblib2``: two jobs at once with half the cores each (``hydra/launcher=joblib hydra.launcher.n_jobs=2``).

Prints the command, the CPU and the load average before and after, then one Markdown table.

    python benchmarks/sweep_throughput.py              # unet + resunet, windows 32 and 64, scenario china: ~6 min
    python benchmarks/sweep_throughput.py --quick      # unet, window 32 and 64, scenario china: ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child import cpu_name  # noqa: E402 -- the benchmarks folder's own helper

REPO = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, list[str]] = {
    "default": [],
    "fp32": ["trainer.precision=32-true"],
    "joblib2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="unet,resunet")
    p.add_argument("--windows", default="32,64")
    p.add_argument("--scenario", default="china")
    p.add_argument("--seeds", default="0")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", type=Path, default=None, help="keep the sweeps here (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="U-Net only")
    args = p.parse_args(argv)
    if args.quick:
        args.models = "unet"
    return args


def run_sweep(out: Path, data_dir: Path, args: argparse.Namespace, extra: list[str]) -> float:
    """One train.py multirun into ``out``; its wall time in seconds."""
    cmd = [sys.executable, "train.py", "-m", f"model={args.models}", f"window={args.windows}",
           f"scenario={args.scenario}", f"seed={args.seeds}", "logger=none", "trainer.enable_progress_bar=false",
           f"paths.data_dir={data_dir}", f"hydra.sweep.dir={out}", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def summarise(out: Path, wall: float, scenario: str) -> dict[str, float]:
    """Runs, epochs and F1 read from each run's metrics.json."""
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/metrics.json"))]
    epochs = sum(r["epochs"] for r in records)
    per_epoch = statistics.median(r["wall_time_s"] / max(r["epochs"], 1) for r in records)
    own = [r["areas"][scenario]["f1"] for r in records if scenario in r.get("areas", {})]
    return {"runs": len(records), "wall_s": wall, "runs_per_h": 3600 * len(records) / wall,
            "epochs": epochs, "epochs_per_h": 3600 * epochs / wall, "s_per_epoch": per_epoch,
            "own_f1": statistics.mean(own) if own else float("nan")}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print("$ python benchmarks/sweep_throughput.py " + shlex.join(argv if argv is not None else sys.argv[1:]))
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        data_dir = root / "data"
        from slidemap.data.synthetic import ensure_synthetic

        ensure_synthetic(data_dir / "synthetic-scale0.1-seed0", scale=0.1, seed=0)  # written once, not timed
        rows = {}
        for name in args.variants:
            wall = run_sweep(root / name, data_dir, args, VARIANTS[name])
            rows[name] = summarise(root / name, wall, args.scenario)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    base = rows.get("default")
    print("| variant | runs | wall (s) | runs/h | epochs | epochs/h | s/epoch (median run) | own-site F1 |"
          + (" runs/h vs default |" if base else ""))
    print("|---|--:|--:|--:|--:|--:|--:|--:|" + ("--:|" if base else ""))
    for name, r in rows.items():
        ratio = f" {r['runs_per_h'] / base['runs_per_h']:.2f}x |" if base else ""
        print(f"| {name} | {r['runs']} | {r['wall_s']:.0f} | {r['runs_per_h']:.0f} | {r['epochs']} | "
              f"{r['epochs_per_h']:.0f} | {r['s_per_epoch']:.2f} | {100 * r['own_f1']:.1f} |{ratio}")


if __name__ == "__main__":
    main()
