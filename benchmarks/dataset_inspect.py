"""How long `slidemap dataset DIR` takes on a patch dataset of 2,000 pairs of 128 px (issue 25, item 1: under 10 s
on 2 cores).

The dataset is fabricated in a temporary folder in the Landslide4Sense-derived PNG layout as published (RGBA PNG
images stretched per patch, RGBA masks storing 0/255, ``image_N.png`` / ``mask_N.png``, ``train/validation/test``),
then the command runs in a child process, as a user runs it (imports included):

    python benchmarks/dataset_inspect.py              # 2,000 pairs: 1,400 train, 300 validation, 300 test
    python benchmarks/dataset_inspect.py --pairs 200  # a quick look
    python benchmarks/dataset_inspect.py --format h5  # the Landslide4Sense release layout (HDF5, 14 channels)

``--format h5`` fabricates ``{TrainData,ValidData,TestData}/{img,mask}/image_N.h5 / mask_N.h5`` as the release
stores them ('img' (128, 128, 14) float32, 'mask' (128, 128) uint8 0/1; ``tests/l4s_fixtures.py``).

Prints the command, the CPU, the wall time and peak RSS of the child, and its exit status.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from child import cpu_name, timed_child  # noqa: E402
from l4s_fixtures import N_CHANNELS, mask, write_pair  # noqa: E402
from patch_fixtures import write_l4s_png  # noqa: E402


def write_l4s_h5(root: Path, counts: dict[str, int], size: int) -> Path:
    """The Landslide4Sense release layout, float32 images (the structure matters here, not the values)."""
    rng = np.random.default_rng(0)
    for split, n in zip(("TrainData", "ValidData", "TestData"), counts.values()):
        for number in range(1, n + 1):
            img = rng.random((size, size, N_CHANNELS), dtype=np.float32) + np.arange(N_CHANNELS, dtype=np.float32)
            write_pair(root, split, number, img, mask(number)[:size, :size])
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--format", choices=("png", "h5"), default="png")
    args = parser.parse_args()
    counts = {"train": round(0.7 * args.pairs), "validation": round(0.15 * args.pairs)}
    counts["test"] = args.pairs - sum(counts.values())
    with tempfile.TemporaryDirectory() as tmp:
        write = write_l4s_h5 if args.format == "h5" else write_l4s_png
        root = write(Path(tmp) / "l4s", counts, args.size)
        cmd = [sys.executable, "-m", "slidemap.cli", "dataset", str(root)]
        wall, rss, code = timed_child(cmd, Path(tmp) / "stderr.log")
        print(f"$ {' '.join(sys.argv)}\nCPU: {cpu_name()}\n{args.pairs} {args.format} pairs of {args.size} px "
              f"({', '.join(f'{k} {v}' for k, v in counts.items())}): slidemap dataset {wall:.2f} s wall, peak RSS "
              f"{rss:.2f} GiB, exit {code}")
        np.testing.assert_equal(code, 0)


if __name__ == "__main__":
    main()
