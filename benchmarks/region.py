"""`slidemap region` on a fabricated region: N adjacent, overlapping products cut from a synthetic site, mapped with
1 and 2 local workers and through submitit-local.

The synthetic taiwan site (``data=synthetic``, ``--scale``) is cut into ``--products`` column strips that overlap by
``--overlap-px``, each written as a Sentinel-2 band folder (uint16 DN with GDAL scale 1e-4, tiles T51QTA, T51QTB, ...)
in a temporary folder (never committed); the site's DEM serves every product. Each engine maps the same region into
its own folder in a child process. Reported: wall time, km2/s over the region's area, the peak resident memory of the
jobs' `slidemap map` processes (the manifest's ``peak_gib``: largest and mean) and of the whole process tree, and the
merge's share of the wall time.

    python benchmarks/region.py --ckpt outputs/.../checkpoints/best.ckpt          # 4 products, scale 0.25
    python benchmarks/region.py --products 6 --scale 0.3 --engines local1 local2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child import cpu_name, timed_child  # noqa: E402 -- the benchmarks folder's own helpers
from map_throughput import make_checkpoint  # noqa: E402

from slidemap.data.synthetic.writer import write_synthetic  # noqa: E402

ENGINES = {"local1": ["--workers", "1"], "local2": ["--workers", "2"],
           "submitit-local": ["--executor", "submitit-local"]}
FILE_BANDS = ("B02", "B03", "B04", "B08")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--products", type=int, default=4, help="adjacent products the site is cut into")
    p.add_argument("--overlap-px", type=int, default=100, help="columns shared by neighbouring products")
    p.add_argument("--scale", type=float, default=0.25, help="synthetic site scale (0.1 = the default data set)")
    p.add_argument("--site", default="taiwan")
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    p.add_argument("--cpus-per-task", type=int, default=1, help="submitit-local: threads of each array task")
    p.add_argument("--ckpt", default=None, help="default: a random paper U-Net (base_filters 32, window 64)")
    p.add_argument("--tile", type=int, default=None, help="slidemap map --tile of every job (default: its default)")
    p.add_argument("--workdir", default=None, help="where the region is written (default: a temporary folder)")
    return p.parse_args(argv)


def cut_products(site: Path, root: Path, n: int, overlap: int) -> tuple[list[Path], float]:
    """``n`` band folders of overlapping column strips of ``site``'s s2.tif; returns them and the area in km2."""
    with rasterio.open(site / "s2.tif") as src:
        data, profile = src.read(), src.profile
        height, width, res = src.height, src.width, abs(src.transform.a)
    step = (width - overlap) / n
    products = []
    for k in range(n):
        c0, c1 = int(round(k * step)), int(round((k + 1) * step + overlap)) if k < n - 1 else width
        folder = root / f"S2B_MSIL2A_20240830T022529_N0509_R046_T51QT{chr(ord('A') + k)}_20240830T060000"
        folder.mkdir(parents=True)
        window = Window(c0, 0, c1 - c0, height)
        band_profile = {**profile, "count": 1, "width": c1 - c0, "transform": rasterio.windows.transform(
            window, profile["transform"])}
        for i, band in enumerate(FILE_BANDS):
            with rasterio.open(folder / f"T51QT{chr(ord('A') + k)}_20240830T022529_{band}_10m.tif", "w",
                               **band_profile) as dst:
                dst.write(data[i, :, c0:c1], 1)
                dst.scales = (1e-4,)
        products.append(folder)
    return products, height * width * res * res / 1e6


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print("command: python benchmarks/region.py " + shlex.join(sys.argv[1:] if argv is None else argv))
    print(f"CPU: {cpu_name()}, {len(os.sched_getaffinity(0))} cores")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_synthetic(root / "synthetic", scale=args.scale, seed=0)
        site = root / "synthetic" / args.site
        products, km2 = cut_products(site, root / "products", args.products, args.overlap_px)
        print(f"fabricated {args.products} products of {args.site} (scale {args.scale}, {km2:.1f} km2) in "
              f"{time.perf_counter() - start:.0f} s")
        ckpt = Path(args.ckpt) if args.ckpt else root / "model.ckpt"
        if not args.ckpt:
            make_checkpoint(ckpt, "unet", 32, 64)
        config = root / "submitit-local.yaml"
        config.write_text(f"timeout_min: 60\ncpus_per_task: {args.cpus_per_task}\n")
        common = ["--ckpt", str(ckpt), "--s2", *map(str, products), "--dem", str(site / "dem.tif")]
        common += ["--tile", str(args.tile)] if args.tile else []
        rows = []
        for engine in args.engines:
            out = root / f"region-{engine}"
            extra = ENGINES[engine] + (["--executor-config", str(config)] if engine == "submitit-local" else [])
            load = os.getloadavg()[0]
            wall, tree_peak, code = timed_child([sys.executable, "-m", "slidemap.cli", "region", *common, "--out",
                                                 str(out), *extra], root / f"{engine}.log")
            text = (root / f"{engine}.log").read_text()
            if code != 0:
                raise SystemExit(f"slidemap region ({engine}) failed:\n{text[-3000:]}")
            merge = float(re.search(r"\(merge ([0-9.]+) s\)", text).group(1))
            found = re.search(r"region: (\d+) landslide polygon", text)
            jobs = json.loads((out / "manifest.json").read_text())["jobs"]
            peaks = [j["peak_gib"] for j in jobs]
            rows.append((engine, wall, km2 / wall, max(peaks), float(np.mean(peaks)), tree_peak, merge,
                         100 * merge / wall, int(found.group(1)) if found else -1, load))
    print(f"\n{args.products} products x {args.overlap_px} px overlap, {km2:.1f} km2, tile "
          f"{args.tile or 'default'}, checkpoint {args.ckpt or 'random paper U-Net'}\n")
    print("| engine | wall s | km2/s | job peak GiB (max / mean) | process tree peak GiB | merge s | merge share | "
          "polygons | load avg |")
    print("|:--|--:|--:|--:|--:|--:|--:|--:|--:|")
    for engine, wall, rate, pmax, pmean, tree, merge, share, polygons, load in rows:
        print(f"| {engine} | {wall:.1f} | {rate:.2f} | {pmax:.2f} / {pmean:.2f} | {tree:.2f} | {merge:.1f} | "
              f"{share:.0f}% | {polygons} | {load:.2f} |")


if __name__ == "__main__":
    main()
