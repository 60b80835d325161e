"""F1 of the blended mosaic against the paper's grid, for every checkpoint of a sweep and every test area.

Issue 4 asks that the blended mosaic score at least the grid on every test area. This script measures it:
each run's best checkpoint predicts each site's test area as a full mosaic in fp32, as eval.py does. Five
mosaics are compared: the grid, the default sin² taper at 50% overlap, a flat (untapered) average at 50%,
the sin² blend with flip test-time augmentation (mean logit over the four flips of each tile), and the whole
area in one tile (the seamless limit).

Besides F1 at the checkpoint's threshold, every mosaic's average precision (area under the precision-recall curve,
torchmetrics, exact) is compared with the grid's: AP does not depend on a threshold, so it tells a mosaic that ranks
pixels worse from one whose probabilities are only shifted across the threshold (issue 17, item 3).

    python benchmarks/blend_vs_grid.py multirun/<date>/<time> data/synthetic-scale0.1-seed0
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import binary_average_precision

import slidemap.mapping.mosaic as mosaic
from slidemap.data.sites.reader import read_sites
from slidemap.data.tiling.split import split_sites
from slidemap.evaluation.scoring import confusion_counts, scores
from slidemap.mapping.checkpoint import load_checkpoint


def flat_profiles(length: int, starts: list[int], tile: int, mode: str, overlap: float) -> list[np.ndarray]:
    """Untapered weights: every tile's pixels count alike."""
    return [np.ones(tile, np.float32) for _ in starts]


class FlipAverage(torch.nn.Module):
    """Test-time augmentation: the mean logit over the four horizontal/vertical flips of each tile."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        for dims in ((-1,), (-2,), (-2, -1)):
            out = out + self.net(x.flip(dims)).flip(dims)
        return out / 4


VARIANTS = {"grid": ("grid", None, False, False), "sin2-50": ("blend", None, False, False),
            "flat-50": ("blend", flat_profiles, False, False), "sin2-50-flips": ("blend", None, True, False),
            "whole-area": ("blend", None, False, True)}
"""name -> (mode, tile weights, flip averaging, one tile over the whole area). ``whole-area`` is the limit every
seamless mosaic tends to: the network run once on the whole test area (zero-padded to a multiple of 16), the most
context any pixel can get, and no tile border inside the area."""


def average_precision(prob: np.ndarray, label: np.ndarray, valid: np.ndarray) -> float:
    """Area under the precision-recall curve over the valid pixels, in percent (exact: every distinct score)."""
    keep = valid & np.isfinite(prob)
    return 100 * float(binary_average_precision(torch.from_numpy(prob[keep].astype(np.float32)),
                                                torch.from_numpy(label[keep].astype(bool)).long()))


def summary_table(metric: str, diffs: dict[str, list[tuple[float, str]]]) -> str:
    """One markdown row per mosaic: how often and by how much it differs from the grid in ``metric``."""
    lines = [f"| mosaic | cells with {metric} >= grid | cells more than 1 point below | min diff (where) | "
             "median diff | mean diff |", "|---|--:|--:|--:|--:|--:|"]
    for variant, d in diffs.items():
        values = [x for x, _ in d]
        worst = min(d)
        lines.append(f"| {variant} | {sum(x >= 0 for x in values)} / {len(values)} | {sum(x < -1 for x in values)} | "
                     f"{worst[0]:+.2f} ({worst[1]}) | {statistics.median(values):+.2f} | "
                     f"{statistics.mean(values):+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir")
    p.add_argument("data_root", help="the sites the sweep trained on")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help="mosaics to compare (grid is always included)")
    args = p.parse_args(argv)
    print("command: python benchmarks/blend_vs_grid.py " + shlex.join(sys.argv[1:] if argv is None else argv))
    sites = read_sites(args.data_root)
    splits = split_sites(sites)
    default_profiles = mosaic._profiles
    variants = {v: VARIANTS[v] for v in VARIANTS if v == "grid" or v in args.variants}
    diffs: dict[str, list[tuple[float, str]]] = {v: [] for v in variants if v != "grid"}
    ap_diffs: dict[str, list[tuple[float, str]]] = {v: [] for v in diffs}
    for run in sorted(r for r in Path(args.sweep_dir).iterdir() if (r / "checkpoints" / "best.ckpt").is_file()):
        model = load_checkpoint(run / "checkpoints" / "best.ckpt")
        for name, site in sites.items():
            read, valid = mosaic.site_reader(site, model.normaliser, splits[name].test)
            stack = read(0, valid.shape[0])[0]
            label = site.label[splits[name].test.slices]
            f1, ap = {}, {}
            for variant, (mode, profiles, flips, whole) in variants.items():
                mosaic._profiles = profiles or default_profiles
                net = FlipAverage(model.net).eval() if flips else model.net
                tile = -(-max(valid.shape) // 16) * 16 if whole else model.window
                try:
                    with torch.no_grad():
                        prob = mosaic.predict_mosaic(net, stack, valid, tile, mode=mode, overlap=0.5,
                                                     batch_size=64, progress=False)
                finally:
                    mosaic._profiles = default_profiles
                c = confusion_counts(np.nan_to_num(prob) > model.threshold, label, valid)
                f1[variant] = 100 * scores(c["tp"], c["fp"], c["fn"])["f1"]
                ap[variant] = average_precision(prob, label, valid)
            for variant in diffs:
                diffs[variant].append((f1[variant] - f1["grid"], f"{run.name} on {name}"))
                ap_diffs[variant].append((ap[variant] - ap["grid"], f"{run.name} on {name}"))
            print(f"{run.name:<20} {name:<8} " + "  ".join(f"{v} F1 {f1[v]:6.2f} AP {ap[v]:6.2f}" for v in f1),
                  flush=True)
    print("\nF1 at the checkpoint's threshold:\n" + summary_table("F1", diffs))
    print("\nAverage precision (threshold-free):\n" + summary_table("AP", ap_diffs))


if __name__ == "__main__":
    main()
