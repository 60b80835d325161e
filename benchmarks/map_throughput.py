"""Mapping throughput and peak memory of `slidemap map` (blended mosaic) on fabricated scenes of several sizes.

Each size gets a scene in a temporary folder (never committed): s2.tif as uint16 DN (tiled, deflate, written
strip by strip, like an L2A band stack) and dem.tif at 12.5 m, both in UTM 33N. `slidemap map` runs in a child
process; its wall time and peak resident memory (ru_maxrss of the child) are reported. The network's weights
are random (speed and memory do not depend on them); `--base-filters 32` is the paper's U-Net.

    python benchmarks/map_throughput.py                                  # 2745 px and 10980 px (a whole tile)
    python benchmarks/map_throughput.py --sizes 1024 --base-filters 32   # the paper U-Net on a small scene
    python benchmarks/map_throughput.py --sizes 2745 --tiles 64 512 --ckpt best.ckpt  # old vs new default tile
    python benchmarks/map_throughput.py --sizes 2745 --ckpt best.ckpt --engines torch-bf16 onnx-fp32 onnx-int8

With ``--engines``, the checkpoint is exported (``slidemap export``, fp32 and ``--quantize int8``) and each engine maps
the same scene in turn, ``--repeat`` rounds; the table gives medians. Each engine's test-area F1 is measured on the
sites the checkpoint was trained on (its card's data root, or ``--sites``), mapped as ``slidemap map`` maps, and the
network alone is timed and profiled per operator on one 512 px tile. The scene is fabricated, not a synthetic site, so
a model trained on the synthetic sites maps it with ``--allow-synthetic-model``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window

from slidemap.data.tiling.patches import Normaliser
from slidemap.training.module import LandslideModule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child import cpu_name, timed_child  # noqa: E402 -- the benchmarks folder's own helpers
from models import model_net  # noqa: E402

CRS = "EPSG:32633"
CHANNELS = ["B2", "B3", "B4", "B8", "slope"]
ENGINES = ("torch-bf16", "torch-fp32", "onnx-fp32", "onnx-int8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=int, default=[2745, 10980], help="scene sizes in pixels (square)")
    p.add_argument("--model", default="unet")
    p.add_argument("--base-filters", type=int, default=8, help="32 = the paper's U-Net (16x the FLOPs of 8)")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--tiles", nargs="+", type=int, default=[None],
                   help="slidemap map --tile values to compare (default: its default, 512)")
    p.add_argument("--overlap", type=float, default=None, help="default: slidemap map's (a 64 px ramp, at most 0.5)")
    p.add_argument("--precision", default="auto", choices=["auto", "32", "bf16"])
    p.add_argument("--ckpt", default=None, help="map with this checkpoint instead of random weights")
    p.add_argument("--workdir", default=None, help="where scenes are written (default: a temporary folder)")
    p.add_argument("--engines", nargs="+", default=None, choices=ENGINES,
                   help="compare mapping engines (needs --ckpt): torch-bf16 is slidemap map's default CPU path here")
    p.add_argument("--repeat", type=int, default=3, help="with --engines: rounds over the engines")
    p.add_argument("--sites", default=None, help="with --engines: sites whose test areas give F1 (default: the card's)")
    return p.parse_args(argv)


def fabricate_scene(folder: Path, size: int, strip: int = 512) -> None:
    """A size x size px scene: smooth terrain, a vegetation pattern with bare patches; written strip by strip."""
    folder.mkdir(parents=True, exist_ok=True)
    transform = from_origin(400000.0, 5000000.0, 10.0, 10.0)
    rng = np.random.default_rng(0)
    phase = rng.uniform(0, 2 * np.pi, 6)
    profile = dict(driver="GTiff", width=size, height=size, count=4, dtype="uint16", crs=CRS, transform=transform,
                   nodata=0, tiled=True, blockxsize=512, blockysize=512, compress="deflate", BIGTIFF="IF_SAFER")
    with rasterio.open(folder / "s2.tif", "w", **profile) as dst:
        dst.descriptions = ("B2", "B3", "B4", "B8")
        cols = np.arange(size)[None, :]
        for r0 in range(0, size, strip):
            rows = np.arange(r0, min(size, r0 + strip))[:, None]
            veg = 0.5 + 0.5 * np.sin(rows / 97.0 + phase[0]) * np.cos(cols / 131.0 + phase[1])
            noise = rng.normal(0, 0.01, (4, rows.size, size))
            refl = np.stack([0.04 + 0.03 * (1 - veg), 0.06 + 0.03 * (1 - veg), 0.05 + 0.08 * (1 - veg),
                             0.15 + 0.25 * veg]) + noise
            dst.write(np.clip(refl * 10000, 1, 65535).astype(np.uint16), window=Window(0, r0, size, rows.size))
    dem_size = int(np.ceil(size * 10 / 12.5)) + 4
    dem_profile = dict(driver="GTiff", width=dem_size, height=dem_size, count=1, dtype="float32", crs=CRS,
                       transform=from_origin(400000.0 - 25, 5000000.0 + 25, 12.5, 12.5), nodata=-9999.0,
                       tiled=True, blockxsize=512, blockysize=512, compress="deflate", BIGTIFF="IF_SAFER")
    with rasterio.open(folder / "dem.tif", "w", **dem_profile) as dst:
        cols = np.arange(dem_size)[None, :]
        for r0 in range(0, dem_size, strip):
            rows = np.arange(r0, min(dem_size, r0 + strip))[:, None]
            z = 800 + 300 * np.sin(rows / 150.0 + phase[2]) * np.cos(cols / 170.0 + phase[3]) + 0.5 * rows
            dst.write(z.astype(np.float32)[None], window=Window(0, r0, dem_size, rows.size))


def make_checkpoint(path: Path, model: str, base_filters: int, window: int) -> None:
    """A checkpoint as train.py writes it (random weights, a plausible normaliser)."""
    torch.manual_seed(0)
    config, net = model_net(model, len(CHANNELS), base_filters=base_filters)
    head = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():  # a sparse map, as real ones are: random weights otherwise flag half the scene
        head.bias.fill_(-6.0)
    norm = Normaliser(tuple(CHANNELS), np.array([0.05, 0.07, 0.09, 0.27, 20.0], np.float32),
                      np.array([0.02, 0.02, 0.04, 0.1, 10.0], np.float32))
    module = LandslideModule(net, model={"name": model, "net": config},
                             data_info={"channels": CHANNELS, "window": window, "normaliser": norm.to_dict()})
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)


def run_map(ckpt: Path, scene: Path, out: Path, args: argparse.Namespace,
            tile: int | None = None, model: list[str] | None = None) -> tuple[float, float, dict[str, float]]:
    """Wall seconds, peak RSS (GiB) and the logged step times of one `slidemap map` child process (``model``: the
    model options, default ``--ckpt CKPT --precision P``)."""
    model = model or ["--ckpt", str(ckpt), "--precision", args.precision]
    cmd = [sys.executable, "-m", "slidemap.cli", "map", *model, "--scene", str(scene), "--out", str(out)]
    cmd += ["--allow-synthetic-model"] if args.engines else []
    cmd += ["--overlap", str(args.overlap)] if args.overlap is not None else []
    cmd += ["--tile", str(tile)] if tile is not None else []
    log = out.with_name(out.name + ".log")
    wall, peak, code = timed_child(cmd, log)
    stderr = log.read_text()
    log.unlink()
    if code != 0:
        raise SystemExit(f"slidemap map failed:\n{stderr[-3000:]}")
    steps = {}
    mosaic = re.search(r"mosaic \((\d+) px tiles, overlap ([0-9.]+)\) predicted and written in ([0-9.]+) s",
                       stderr)
    polygons = re.search(r"(\d+) landslide polygon\(s\), [0-9.]+ km2, written in ([0-9.]+) s", stderr)
    if mosaic:
        steps["tile"], steps["overlap"], steps["mosaic_s"] = (float(g) for g in mosaic.groups())
    if polygons:
        steps["polygons"], steps["polygons_s"] = float(polygons.group(1)), float(polygons.group(2))
    return wall, peak, steps


def engine_options(engine: str, ckpt: Path, onnx_files: dict[str, Path]) -> list[str]:
    """`slidemap map`'s model options for an engine."""
    if engine.startswith("torch"):
        return ["--ckpt", str(ckpt), "--precision", "bf16" if engine == "torch-bf16" else "32"]
    return ["--engine", "onnxruntime", "--model", str(onnx_files[engine])]


def compare_engines(args: argparse.Namespace, root: Path) -> None:
    """Each engine maps each scene ``--repeat`` times (rounds over the engines); then F1, network speed, profiles."""
    import json

    import engine_profile as ep
    import onnxruntime

    if not args.ckpt:
        raise SystemExit("--engines needs --ckpt (a trained checkpoint: F1 is measured)")
    ckpt = Path(args.ckpt)
    print(f"onnxruntime {onnxruntime.__version__}, CPU {cpu_name()}")
    onnx_files = {"onnx-fp32": root / "fp32.onnx", "onnx-int8": root / "int8.onnx"}
    for engine, path in onnx_files.items():
        if engine in args.engines:
            cmd = [sys.executable, "-m", "slidemap.cli", "export", str(ckpt), "--out", str(path)]
            cmd += ["--quantize", "int8"] if engine == "onnx-int8" else []
            wall, _, code = timed_child(cmd, root / "export.log")
            if code:
                raise SystemExit((root / "export.log").read_text()[-3000:])
            extra = [line for line in (root / "export.log").read_text().splitlines() if "int8 vs fp32" in line]
            print(f"export {engine}: {wall:.1f} s, {path.stat().st_size / 1e6:.1f} MB{'; ' + extra[0] if extra else ''}")
    runs: dict[tuple[int, str], list[tuple[float, float, float, float]]] = {}
    for size in sorted(args.sizes):
        scene = root / f"scene{size}"
        fabricate_scene(scene, size)
        for _ in range(args.repeat):
            for engine in args.engines:
                load = os.getloadavg()[0]
                out = root / f"maps{size}-{engine}"
                wall, peak, steps = run_map(ckpt, scene, out, args, model=engine_options(engine, ckpt, onnx_files))
                runs.setdefault((size, engine), []).append((steps.get("mosaic_s", float("nan")), wall, peak, load))
                subprocess.run(["rm", "-rf", str(out)], check=True)
        subprocess.run(["rm", "-rf", str(scene)], check=True)
    card = load_checkpoint_card(ckpt)
    sites = Path(args.sites or card["data"]["root"])
    extra: dict[str, tuple[float, dict[str, float]]] = {}
    profiles = {}
    for engine in args.engines:
        model, autocast = ep.predictor(engine if engine != "torch-fp32" else "torch-bf16", ckpt, onnx_files)
        autocast = None if engine == "torch-fp32" else autocast
        rate = ep.network_rate(model, autocast, len(model.channels))
        extra[engine] = (rate, ep.area_f1(model, autocast, sites))
        if engine == "torch-bf16":
            profiles[engine] = ep.torch_profile(model, len(model.channels))
        elif engine.startswith("onnx"):
            profiles[engine] = ep.ort_profile(onnx_files[engine], len(model.channels), torch.get_num_threads(), root)
    areas = list(next(iter(extra.values()))[1])
    print(f"\nengines on {ckpt} (F1 on the test areas of {sites}), {args.repeat} rounds\n")
    print("| scene px | engine | mosaic s (each run) | mosaic Mpx/s (median) | map wall s (median) | peak RSS GiB (max) | "
          "network Mpx/s (512 px tile) | " + " | ".join(f"F1 {a}" for a in areas) + " | load avg |")
    print("|--:|---|---|--:|--:|--:|--:|" + "--:|" * len(areas) + "--:|")
    rates = {}
    for (size, engine), rows in runs.items():
        mosaic = [r[0] for r in rows]
        rates[(size, engine)] = size * size / 1e6 / float(np.median(mosaic))
        rate, f1 = extra[engine]
        print(f"| {size} x {size} | {engine} | {', '.join(f'{m:.2f}' for m in mosaic)} | {rates[(size, engine)]:.3f} | "
              f"{np.median([r[1] for r in rows]):.1f} | {max(r[2] for r in rows):.2f} | {rate:.3f} | "
              + " | ".join(f"{f1[a]:.2f}" for a in areas) + f" | {min(r[3] for r in rows):.1f}-{max(r[3] for r in rows):.1f} |")
    base = "torch-bf16"
    for (size, engine), rate in rates.items():
        if engine != base and (size, base) in rates:
            print(f"{engine} / {base} at {size} px: mosaic {rate / rates[(size, base)]:.2f}x, network "
                  f"{extra[engine][0] / extra[base][0]:.2f}x")
    for engine, rows in profiles.items():
        print(f"\nprofile {engine} (one 512 px tile, self time per operator, top {len(rows)}):")
        for name, ms, share in rows:
            print(f"  {name:40s} {ms:8.1f} ms  {100 * share:5.1f}%")
    print(json.dumps({"rates": {f"{s}/{e}": r for (s, e), r in rates.items()},
                      "network": {e: v[0] for e, v in extra.items()}}))


def load_checkpoint_card(ckpt: Path) -> dict:
    from slidemap.mapping.checkpoint import load_checkpoint

    return load_checkpoint(ckpt).card or {"data": {"root": None}}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print("command: python benchmarks/map_throughput.py " + shlex.join(sys.argv[1:] if argv is None else argv))
    print(f"threads: {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}")
    if args.engines:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            compare_engines(args, Path(tmp))
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        ckpt = Path(args.ckpt) if args.ckpt else root / "model.ckpt"
        if not args.ckpt:
            make_checkpoint(ckpt, args.model, args.base_filters, args.window)
        rows = []
        for size in sorted(args.sizes):
            scene = root / f"scene{size}"
            start = time.perf_counter()
            fabricate_scene(scene, size)
            made = time.perf_counter() - start
            for tile in args.tiles:
                load = os.getloadavg()[0]
                wall, peak, steps = run_map(ckpt, scene, root / f"maps{size}-{tile}", args, tile)
                mpx = size * size / 1e6
                mosaic = steps.get("mosaic_s", float("nan"))
                rows.append((size, int(steps.get("tile", -1)), steps.get("overlap", float("nan")), mpx, made, wall,
                             mosaic, mpx / mosaic, 100 * mpx / mosaic, int(steps.get("polygons", -1)),
                             steps.get("polygons_s", float("nan")), peak, load))
                subprocess.run(["rm", "-rf", str(root / f"maps{size}-{tile}")], check=True)
            subprocess.run(["rm", "-rf", str(scene)], check=True)
    model = f"checkpoint {args.ckpt}" if args.ckpt else f"{args.model} (base_filters {args.base_filters}, random)"
    print(f"\nmodel {model}, window {args.window}, precision {args.precision}\n")
    print("| scene px | tile | overlap | Mpx | fabricate s | map wall s | mosaic s | mosaic Mpx/s | mosaic km2/s | "
          "polygons | polygons s | peak RSS GiB | load avg |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for size, tile, overlap, mpx, made, wall, mosaic, rate, km2s, n_poly, poly_s, peak, load in rows:
        print(f"| {size} x {size} | {tile} | {overlap:g} | {mpx:.1f} | {made:.1f} | {wall:.1f} | {mosaic:.1f} | "
              f"{rate:.3f} | {km2s:.1f} | {n_poly} | {poly_s:.1f} | {peak:.2f} | {load:.2f} |")


if __name__ == "__main__":
    main()
