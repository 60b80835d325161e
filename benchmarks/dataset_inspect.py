"""How long `slidemap dataset DIR` takes on a patch dataset of 2,000 pairs of 128 px (issue 25, item 1: under 10 s
on 2 cores).

The dataset is fabricated in a temporary folder in the Landslide4Sense-derived PNG layout as published (RGBA PNG
images stretched per patch, RGBA masks storing 0/255, ``image_N.png`` / ``mask_N.png``, ``train/validation/test``),
then the command runs in a child process, as a user runs it (imports included):

    python benchmarks/dataset_inspect.py              # 2,000 pairs: 1,400 train, 300 validation, 300 test
    python benchmarks/dataset_inspect.py --pairs 200  # a quick look

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
from patch_fixtures import write_l4s_png  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    counts = {"train": round(0.7 * args.pairs), "validation": round(0.15 * args.pairs)}
    counts["test"] = args.pairs - sum(counts.values())
    with tempfile.TemporaryDirectory() as tmp:
        root = write_l4s_png(Path(tmp) / "l4s", counts, args.size)
        cmd = [sys.executable, "-m", "slidemap.cli", "dataset", str(root)]
        wall, rss, code = timed_child(cmd, Path(tmp) / "stderr.log")
        print(f"$ {' '.join(sys.argv)}\nCPU: {cpu_name()}\n{args.pairs} pairs of {args.size} px "
              f"({', '.join(f'{k} {v}' for k, v in counts.items())}): slidemap dataset {wall:.2f} s wall, peak RSS "
              f"{rss:.2f} GiB, exit {code}")
        np.testing.assert_equal(code, 0)


if __name__ == "__main__":
    main()
