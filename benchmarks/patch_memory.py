"""A patch dataset larger than memory trains in bounded memory (issue 25, item 5): peak RSS, time to the first
training step, and the step-time cost of reading tiles from their files against the in-memory path.

Fabricates ``--patches`` (default 20,000) patches of 14 channels x 128 px in ``data=patches``' layout (``.npy``
images as uint16 digital numbers, the 14 Landslide4Sense channels B1..B12, slope, dem; uint8 masks; only train/,
so the run draws its 3:1:1 split), then runs four child processes, one after the other, as a user runs them:

1. ``train.py data=patches`` on all of it (``data.stream=auto`` streams: 20,000 x 14 x 128 x 128 float32 is 17 GiB):
   wall time and peak RSS of the whole run (setup, a short epoch, validation, scoring the whole test split);
2. a training loop on all of it, streamed, and 3. and 4. on the first ``--subset`` patches (in memory they take
   1.7 GiB by default), once held in memory and once streamed: seconds from process start to the end of the first
   optimiser step, and the median step time of ``--steps`` steps (U-Net of the paper, batch 4, window 128, data
   loading included), in one run so the ratio is fair.

    python benchmarks/patch_memory.py                       # 20,000 patches (9.2 GB of files in --dir)
    python benchmarks/patch_memory.py --patches 2000 --subset 500 --steps 20   # a quick look

Prints the commands, the CPU and the figures. ``--dir`` keeps the fabricated files (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from child import cpu_name, timed_child  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHANNELS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "slope", "dem"]
SIZE = 128


def fabricate(root: Path, count: int, seed: int = 0) -> float:
    """``count`` distinct pairs (a pool of 32 random fields, each file its own roll of one plus noise); seconds."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    pool = (rng.random((32, len(CHANNELS), SIZE, SIZE)) * 3000 + 500).astype(np.uint16)
    images, masks = root / "train" / "images", root / "train" / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(count):
        shift = (int(rng.integers(SIZE)), int(rng.integers(SIZE)))
        image = np.roll(pool[i % len(pool)], shift, axis=(1, 2))
        r, c, radius = rng.integers(16, SIZE - 16, 2).tolist() + [int(rng.integers(4, 16))]
        mask = ((yy - r) ** 2 + (xx - c) ** 2 < radius**2).astype(np.uint8)
        image[3:8, mask.astype(bool)] += 800  # a landslide is brighter in red..nir: learnable
        np.save(images / f"patch_{i}.npy", image)
        np.save(masks / f"patch_{i}.npy", mask)
    (root / "dataset.yaml").write_text(yaml.safe_dump({"channels": CHANNELS, "units": "reflectance",
                                                       "pixel_size": 10.0, "name": "fabricated"}, sort_keys=False))
    return time.perf_counter() - start


STEPS = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np, torch
from slidemap.data.patch_folder import PatchFolderDataModule
from slidemap.models.unet import UNet
root, stream, steps = sys.argv[1], sys.argv[2] == "true", int(sys.argv[3])
channels = json.loads(sys.argv[4])
torch.manual_seed(0)
dm = PatchFolderDataModule(root, window=128, channels=channels, stream=stream, seed=0)
dm.setup()
net = UNet(in_channels=len(channels))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
times, first = [], None
for i, (x, y, valid) in enumerate(dm.train_dataloader()):
    t = time.perf_counter()
    opt.zero_grad()
    loss = (loss_fn(net(x).squeeze(1), y) * valid).sum() / valid.sum().clamp(min=1)
    loss.backward()
    opt.step()
    if first is None:
        first = time.perf_counter() - start
    if i >= steps:
        break
    times.append(time.perf_counter() - t)
print(json.dumps({"first_step_s": first, "step_median_s": float(np.median(times[1:]))}))
"""


def step_child(root: Path, stream: bool, steps: int, log: Path) -> dict:
    """Time to the first step and the median step (data loading included: the loop times from one batch to the
    next) in a child process; its peak RSS."""
    out = log.with_suffix(".json")
    script = f"import sys; sys.stdout = open({str(out)!r}, 'w')\n" + STEPS
    wall, rss, code = timed_child([sys.executable, "-c", script, str(root), str(stream).lower(), str(steps),
                                   json.dumps(CHANNELS)], log)
    if code != 0:
        raise SystemExit(f"step child failed ({code}); see {log}:\n{log.read_text()[-2000:]}")
    return {**json.loads(out.read_text()), "wall_s": wall, "peak_rss_gib": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", type=int, default=20_000)
    parser.add_argument("--subset", type=int, default=2_000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--train-batches", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="patch_memory_") if args.dir is None else None
    base = Path(tmp) if tmp else args.dir
    try:
        full, subset = base / "full", base / "subset"
        made = fabricate(full, args.patches) if not (full / "dataset.yaml").exists() else float("nan")
        if not (subset / "dataset.yaml").exists():
            (subset / "train").mkdir(parents=True, exist_ok=True)
            for kind in ("images", "masks"):  # the first --subset pairs, linked: the same bytes as the full set
                (subset / "train" / kind).mkdir(exist_ok=True)
                for i in range(args.subset):
                    (subset / "train" / kind / f"patch_{i}.npy").hardlink_to(full / "train" / kind / f"patch_{i}.npy")
            shutil.copy(full / "dataset.yaml", subset / "dataset.yaml")
        print(f"$ {' '.join(sys.argv)}\nCPU: {cpu_name()}\nfabricated {args.patches} pairs of 14 x {SIZE} px in "
              f"{made:.0f} s")
        run = [sys.executable, str(REPO / "train.py"), "data=patches", f"data.root={full}", "window=128",
               f"inputs.channels=[{','.join(CHANNELS)}]", "logger=none", "trainer.max_epochs=1",
               "trainer.min_epochs=1", f"+trainer.limit_train_batches={args.train_batches}",
               "+trainer.limit_val_batches=10", f"hydra.run.dir={base / 'run'}", "previews=0"]
        wall, rss, code = timed_child(run, base / "train.log")
        print(f"train.py on {args.patches} patches (data.stream=auto): exit {code}, {wall:.0f} s wall, "
              f"peak RSS {rss:.2f} GiB")
        if code != 0:
            print((base / "train.log").read_text()[-3000:])
        for root, count, stream in ((full, args.patches, True), (subset, args.subset, False),
                                    (subset, args.subset, True)):
            r = step_child(root, stream, args.steps, base / f"steps-{count}-{stream}.log")
            print(f"{count} patches {'streamed ' if stream else 'in memory'}: first step after "
                  f"{r['first_step_s']:.1f} s, median step {1000 * r['step_median_s']:.0f} ms "
                  f"({args.steps} steps), peak RSS {r['peak_rss_gib']:.2f} GiB")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
