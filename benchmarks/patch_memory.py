"""A patch dataset larger than memory trains in bounded memory (issue 25, item 5): peak RSS, time to the first
training step, and the step-time cost of reading tiles from their files against the in-memory path.

Fabricates ``--patches`` (default 20,000) patches of 14 channels x 128 px in ``data=patches``' layout (``.npy``
images as uint16 digital numbers, the 14 Landslide4Sense channels B1..B12, slope, dem; uint8 masks; only train/,
so the run draws its 3:1:1 split), then runs three child processes, one after the other, as a user runs them:

1. ``train.py data=patches`` on all of it (``data.stream=auto`` streams: 20,000 x 14 x 128 x 128 float32 is 17 GiB):
   wall time and peak RSS of the whole run (setup, a short epoch, validation, scoring the whole test split);
2. the first training step on all of it, streamed: seconds from process start (imports, the structure check and
   the normaliser's sample included) to the end of the first optimiser step;
3. the first ``--subset`` patches (1.7 GiB in memory by default) held in memory and streamed in one process, one
   training step of each in turn (U-Net of the paper, batch 4, window 128, data loading included), so whatever else
   the machine does hits both alike: median step times and the median of the paired ratios.

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


FIRST_STEP = r"""
import json, sys, time
start = time.perf_counter()
import torch
from slidemap.data.patchsets.folder import PatchFolderDataModule
from slidemap.models.unet import UNet
root, channels = sys.argv[1], json.loads(sys.argv[2])
dm = PatchFolderDataModule(root, window=128, channels=channels, stream=True, seed=0)
dm.setup()
net = UNet(in_channels=len(channels))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x, y, valid = next(iter(dm.train_dataloader()))
loss = (torch.nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y, reduction="none") * valid).mean()
loss.backward()
opt.step()
print(json.dumps({"first_step_s": time.perf_counter() - start}))
"""

PAIRED_STEPS = r"""
import json, sys, time
import numpy as np, torch
from slidemap.data.patchsets.folder import PatchFolderDataModule
from slidemap.models.unet import UNet
root, steps, channels = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
loops, times = {}, {}
for stream in (False, True):
    dm = PatchFolderDataModule(root, window=128, channels=channels, stream=stream, seed=0)
    dm.setup()
    torch.manual_seed(0)
    net = UNet(in_channels=len(channels))
    loops[stream] = (iter(dm.train_dataloader()), net, torch.optim.Adam(net.parameters(), lr=1e-3))
    times[stream] = []
for step in range(steps + 1):  # one step of each in turn: whatever else the machine does hits both alike
    for stream, (batches, net, opt) in loops.items():
        t = time.perf_counter()
        x, y, valid = next(batches)
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y, reduction="none") * valid).mean()
        loss.backward()
        opt.step()
        if step:  # the first step warms up
            times[stream].append(time.perf_counter() - t)
print(json.dumps({"memory_s": float(np.median(times[False])), "streamed_s": float(np.median(times[True])),
                  "ratio": float(np.median(np.array(times[True]) / np.array(times[False])))}))
"""


def child(script: str, args: list[str], log: Path) -> dict:
    """Run ``script`` in a child process; its JSON line, wall time and peak RSS."""
    out = log.with_suffix(".json")
    wall, rss, code = timed_child([sys.executable, "-c", f"import sys; sys.stdout = open({str(out)!r}, 'w')\n"
                                   + script, *args], log)
    if code != 0:
        raise SystemExit(f"child failed ({code}); see {log}:\n{log.read_text()[-2000:]}")
    return {**json.loads(out.read_text()), "wall_s": wall, "peak_rss_gib": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", type=int, default=20_000)
    parser.add_argument("--subset", type=int, default=2_000)
    parser.add_argument("--steps", type=int, default=60)
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
        made_in = "reused from --dir" if made != made else f"fabricated in {made:.0f} s"
        print(f"$ {' '.join(sys.argv)}\nCPU: {cpu_name()}\n{args.patches} pairs of 14 x {SIZE} px: {made_in}")
        run_dir = base / "run"
        shutil.rmtree(run_dir, ignore_errors=True)  # a finished run there would be skipped, not trained
        run = [sys.executable, str(REPO / "train.py"), "data=patches", f"data.root={full}", "window=128",
               f"inputs.channels=[{','.join(CHANNELS)}]", "logger=none", "trainer.max_epochs=1",
               "trainer.min_epochs=1", f"+trainer.limit_train_batches={args.train_batches}",
               "+trainer.limit_val_batches=10", f"hydra.run.dir={run_dir}", "previews=0"]
        wall, rss, code = timed_child(run, base / "train.log")
        print(f"train.py on {args.patches} patches (data.stream=auto): exit {code}, {wall:.0f} s wall, "
              f"peak RSS {rss:.2f} GiB")
        if code != 0:
            print((base / "train.log").read_text()[-3000:])
        first = child(FIRST_STEP, [str(full), json.dumps(CHANNELS)], base / "first.log")
        print(f"{args.patches} patches streamed: first step {first['first_step_s']:.1f} s after the process "
              f"started (imports, structure check, normaliser sample), peak RSS {first['peak_rss_gib']:.2f} GiB")
        paired = child(PAIRED_STEPS, [str(subset), str(args.steps), json.dumps(CHANNELS)], base / "paired.log")
        print(f"{args.subset} patches, {args.steps} steps of each in turn (batch 4, U-Net, data loading included): "
              f"in memory {1000 * paired['memory_s']:.0f} ms, streamed {1000 * paired['streamed_s']:.0f} ms per "
              f"step (medians); median paired ratio streamed/in memory {paired['ratio']:.2f}; peak RSS of both "
              f"{paired['peak_rss_gib']:.2f} GiB")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
