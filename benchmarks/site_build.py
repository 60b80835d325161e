"""Site building speed (issue 7): a 20 x 20 km site out of a full-size 10980 x 10980 px Sentinel-2 product.

Fabricates, in a temporary folder, a full-size L2A product (default: a SAFE folder with lossless JP2 bands,
as ESA ships them; ``--kind zip`` zips it, ``--kind cog`` writes a band folder of COGs instead) and four
1 x 1 degree DEM tiles at 1 arc-second (GLO-30 style, EPSG:4326) meeting at the site's centre. Then it runs
``slidemap site`` in a child process and reports its wall time and peak memory (ru_maxrss of that child).

    python benchmarks/site_build.py                 # SAFE + JP2 (fabricating takes about 2 minutes)
    python benchmarks/site_build.py --kind cog      # band folder of COGs (faster to fabricate)
    python benchmarks/site_build.py --keep /tmp/s2  # keep (and on a later run reuse) the fabricated inputs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer

SIZE = 10980
CRS = "EPSG:32651"
ORIGIN = (300_000.0, 2_600_040.0)  # tile 51QUF-like: x 300000-409800, lat ~22.5-23.5, lon ~121.05-122.1
CENTRE = (122.0, 23.0)  # an integer lon/lat inside the product: the four DEM tiles meet under the site
DATE = "20240830T022529"
TILE = "T51QUF"


def smooth_field(rng: np.random.Generator, n: int, cell: int = 64) -> np.ndarray:
    """A terrain-like float32 field in [-1, 1]: coarse noise, bilinearly enlarged (cheap at 10980^2)."""
    k = n // cell + 2
    coarse = rng.uniform(-1, 1, (k, k)).astype(np.float32)
    x = np.arange(n, dtype=np.float32) / cell
    i = x.astype(np.int32)
    f = x - i
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def write_band(path: Path, data: np.ndarray, pixel: float, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"count": 1, "height": data.shape[0], "width": data.shape[1], "dtype": data.dtype.name, "crs": CRS,
               "transform": Affine(pixel, 0, ORIGIN[0], 0, -pixel, ORIGIN[1])}
    if kind == "cog":
        profile |= {"driver": "COG", "compress": "deflate", "blocksize": 512, "num_threads": "all_cpus", "nodata": 0}
    else:  # as ESA: 1024 x 1024 tiles, 6 resolution levels, lossless here
        profile |= {"driver": "JP2OpenJPEG", "QUALITY": 100, "REVERSIBLE": "YES", "BLOCKXSIZE": 1024,
                    "BLOCKYSIZE": 1024, "RESOLUTIONS": 6, "NUM_THREADS": "ALL_CPUS"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def fabricate_product(root: Path, kind: str, size: int) -> Path:
    """A full-size L2A product: B02, B03, B04, B08 (10 m, uint16, offset -1000 baked in) and the SCL (20 m)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from ingest_fixtures import mtd_xml, safe_name

    rng = np.random.default_rng(0)
    terrain = smooth_field(rng, size)
    name = safe_name(DATE, "05.09", TILE)
    base = root / (name if kind != "cog" else "bands")
    granule = base / "GRANULE" / f"L2A_{TILE}_A038765_20240830T023239" / "IMG_DATA"
    for band, (mean, amp) in {"B02": (1400, 300), "B03": (1700, 400), "B04": (1600, 600), "B08": (3500, 1200)}.items():
        dn = (mean + amp * terrain + rng.integers(-25, 25, terrain.shape, dtype=np.int16)).astype(np.uint16)
        path = (granule / "R10m" / f"{TILE}_{DATE}_{band}_10m.jp2" if kind != "cog"
                else base / f"{TILE}_{DATE}_{band}_10m.tif")
        t0 = time.perf_counter()
        write_band(path, dn, 10.0, kind)
        print(f"  wrote {path.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    scl = np.where(terrain[::2, ::2] > 0.6, 9, 4).astype(np.uint8)  # clouds on the high ground
    scl_path = granule / "R20m" / f"{TILE}_{DATE}_SCL_20m.jp2" if kind != "cog" else base / f"{TILE}_{DATE}_SCL_20m.tif"
    write_band(scl_path, scl, 20.0, kind)
    if kind != "cog":
        offsets = {i: -1000 for i in range(13)}
        (base / "MTD_MSIL2A.xml").write_text(mtd_xml("L2A", name, DATE, "05.09", offsets))
    if kind == "zip":
        from ingest_fixtures import zip_safe

        return zip_safe(base)
    return base


def fabricate_dem(root: Path) -> list[Path]:
    """Four GLO-30-like tiles (3600 x 3600 float32, EPSG:4326) around the integer lon/lat ``CENTRE``."""
    paths = []
    res = 1 / 3600
    for lon in (CENTRE[0] - 1, CENTRE[0]):
        for lat in (CENTRE[1] - 1, CENTRE[1]):
            path = root / f"Copernicus_DSM_COG_10_N{int(lat):02d}_00_E{int(lon):03d}_00_DEM.tif"
            paths.append(path)
            if path.exists():
                continue
            c = (np.arange(3600, dtype=np.float32) + 0.5) * res
            z = 800 + 1500 * np.sin(3 * (lon + c))[None, :] * np.cos(2 * (lat + 1 - c))[:, None]
            with rasterio.open(path, "w", driver="GTiff", count=1, width=3600, height=3600, dtype="float32",
                               crs="EPSG:4326", transform=Affine(res, 0, lon, 0, -res, lat + 1), tiled=True,
                               blockxsize=512, blockysize=512, compress="deflate", predictor=3) as dst:
                dst.write(z.astype(np.float32), 1)
    return paths


def fabricate(work: Path, kind: str, size: int) -> dict[str, object]:
    """Fabricate (or find, in a kept folder) the product and the DEM tiles; returns their paths and the time."""
    product_dir = work / f"{kind}_{size}"
    existing = sorted(product_dir.glob("*.zip" if kind == "zip" else "*")) if product_dir.exists() else []
    t0 = time.perf_counter()
    product = existing[0] if existing else fabricate_product(product_dir, kind, size)
    dem = fabricate_dem(work)
    return {"product": str(product), "dem": [str(d) for d in dem], "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=("safe", "zip", "cog"), default="safe")
    p.add_argument("--site-km", type=float, default=20.0)
    p.add_argument("--size", type=int, default=SIZE, help="product size in 10 m pixels (10980 = a full tile)")
    p.add_argument("--keep", type=Path, default=None, help="fabricate here and keep (reused when present)")
    p.add_argument("--fabricate-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.fabricate_only:  # run in its own process: the measuring parent must stay small (see below)
        print(json.dumps(fabricate(args.keep, args.kind, args.size)))
        return 0
    print("$ " + shlex.join(["python", *sys.argv]))

    with tempfile.TemporaryDirectory(prefix="site_build_") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        # Linux counts the memory a child inherits at fork into its ru_maxrss, so the gigabytes of fabricated
        # arrays live and die in a separate process, and the parent that forks the measured child stays small.
        made = json.loads(subprocess.run([sys.executable, __file__, "--fabricate-only", "--keep", str(work),
                                          "--kind", args.kind, "--size", str(args.size)],
                                         check=True, stdout=subprocess.PIPE, text=True).stdout)
        cx, cy = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(*CENTRE)
        cx, cy = round(cx, -1), round(cy, -1)  # on the 10 m lattice, so the site is exactly site-km wide
        half = args.site_km * 500
        bounds = [f"{v:.0f}" for v in (cx - half, cy - half, cx + half, cy + half)]
        out = Path(tmp) / "site"
        cmd = [sys.executable, "-m", "slidemap.cli", "site", "--s2", made["product"], "--dem", *made["dem"],
               "--bounds", *bounds, "--bounds-crs", CRS, "--out", str(out), "--json"]
        print("$ " + shlex.join(["python", *cmd[1:]]))
        log_out, log_err = Path(tmp) / "stdout.json", Path(tmp) / "stderr.txt"
        with log_out.open("w") as fout, log_err.open("w") as ferr:
            start = time.perf_counter()
            child = subprocess.Popen(cmd, stdout=fout, stderr=ferr)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not the fabricator's
            wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            print(log_err.read_text(), file=sys.stderr)
            return 1
        stdout = log_out.read_text()
        summary = json.loads(stdout)
        h, w = summary["shape"]
        print(f"\nproduct: {args.kind}, {args.size} x {args.size} px (fabricated in {made['seconds']:.0f} s); "
              f"DEM: 4 tiles of 3600 x 3600 px; CPUs: {os.cpu_count()}; load average at end: "
              f"{os.getloadavg()[0]:.2f}; {platform.python_implementation()} {platform.python_version()}, "
              f"rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}\n")
        peak_mib = usage.ru_maxrss / 1024  # Linux: KiB
        cpu = usage.ru_utime + usage.ru_stime
        print("| input | site (px) | wall s | CPU s (user+sys) | peak RSS MiB | valid % | masked % | target |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        ok = "met" if wall < 10 and peak_mib < 1024 else "NOT met"
        print(f"| {args.kind} | {w} x {h} | {wall:.2f} | {cpu:.2f} | {peak_mib:.0f} | "
              f"{100 * summary['valid_share']:.1f} | "
              f"{100 * summary['masked_share']:.1f} | < 10 s, < 1024 MiB: {ok} |")
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in summary["timings"].items())
        print(f"\ninside build_site: {steps}; total {summary['seconds']:.2f} s "
              "(the rest of wall: Python start, imports)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
