"""Landslide maps of an area from a trained checkpoint: GeoTIFFs + polygons, and the `slidemap map` command.

Per mapped area ``<name>``: ``<name>_probability.tif`` (float32, NaN nodata), ``<name>_binary.tif`` (uint8:
1 landslide, 0 none, 255 nodata), both tiled, deflate-compressed and with overviews on the site's own grid,
and ``<name>_landslides.gpkg`` (one polygon per predicted landslide with its area in m2). Every file is
written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.enums import Resampling
from rasterio.rio.overview import get_maximum_overview_level
from rasterio.windows import Window

from slidemap.data.scene import SceneStrips
from slidemap.data.site import PRE_CHANNELS, Site
from slidemap.data.split import Block
from slidemap.errors import InputError
from slidemap.evaluation.checkpoint import TrainedModel
from slidemap.evaluation.mosaic import iter_mosaic, site_reader, tile_count
from slidemap.evaluation.polygons import Landslides, vectorise, write_gpkg
from slidemap.evaluation.polygons_streamed import write_polygons_streamed
from slidemap.io import atomic_path

log = logging.getLogger(__name__)

MAP_GDAL_CACHE_MB = 256
"""GDAL block cache while a scene map is written: dirty tiles wait there, so it bounds part of the map's memory."""

OVERVIEW_MIN_PX = 64
"""Overviews are built down to this size (GDAL's default stops at 256, which leaves small maps without)."""


@dataclass(frozen=True, eq=False)
class AreaMap:
    """What mapping one area produced: the arrays (also on disk) and the files written."""

    probability: np.ndarray
    binary: np.ndarray
    landslides: Landslides
    paths: list[Path]
    transform: Affine


def binarise(prob: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 map: 1 where ``prob > threshold``, 0 at or below, 255 where the probability is NaN (nodata).

    Strictly above, as torchmetrics scores the training run's test areas: a bf16 logit of exactly 0 gives a
    probability of exactly 0.5, and the written map must be the scored map.
    """
    out = np.full(prob.shape, 255, np.uint8)
    ok = np.isfinite(prob)
    out[ok] = prob[ok] > threshold
    return out


def overview_factors(width: int, height: int) -> list[int]:
    """Decimation factors 2, 4, ... until the overview is about ``OVERVIEW_MIN_PX`` px (at least one level)."""
    levels = max(1, get_maximum_overview_level(width, height, minsize=OVERVIEW_MIN_PX))
    return [2**k for k in range(1, levels + 1)]


def write_maps(out_dir: Path, name: str, chunks: Iterable[tuple[int, np.ndarray]], shape: tuple[int, int],
               transform: Affine, crs: Any, threshold: float,
               keep: bool = True) -> tuple[np.ndarray | None, np.ndarray | None, list[Path]]:
    """Stream row chunks ``(row0, probabilities)`` into the probability and binary GeoTIFFs.

    Returns the full probability and binary arrays (the polygons and metrics of a test area need them; None
    with ``keep=False``, for scenes too large to hold) and the paths.
    """
    height, width = shape
    prob = np.full(shape, np.nan, np.float32) if keep else None
    binary = np.full(shape, 255, np.uint8) if keep else None
    paths = [out_dir / f"{name}_probability.tif", out_dir / f"{name}_binary.tif"]
    common = dict(driver="GTiff", width=width, height=height, count=1, crs=crs, transform=transform, tiled=True,
                  blockxsize=256, blockysize=256, compress="deflate", BIGTIFF="IF_SAFER")
    with atomic_path(paths[0]) as tmp_p, atomic_path(paths[1]) as tmp_b:
        with rasterio.open(tmp_p, "w", dtype="float32", nodata=float("nan"), predictor=3, **common) as dst_p, \
                rasterio.open(tmp_b, "w", dtype="uint8", nodata=255, **common) as dst_b:
            for r0, part in chunks:
                part_binary = binarise(part, threshold)
                window = Window(0, r0, width, part.shape[0])
                dst_p.write(part, 1, window=window)
                dst_b.write(part_binary, 1, window=window)
                if keep:
                    prob[r0:r0 + part.shape[0]] = part
                    binary[r0:r0 + part.shape[0]] = part_binary
            factors = overview_factors(width, height)
            for dst, resampling in ((dst_p, Resampling.average), (dst_b, Resampling.mode)):
                dst.build_overviews(factors, resampling)
                dst.update_tags(ns="rio_overview", resampling=resampling.name)
            dst_p.set_band_description(1, "landslide probability")
            dst_b.set_band_description(1, f"landslide (probability > {threshold:g})")
    return prob, binary, paths


def map_area(model: TrainedModel, site: Site, out_dir: Path, block: Block | None = None, mode: str = "blend",
             overlap: float = 0.5, tile: int | None = None, threshold: float | None = None, batch_size: int = 16,
             progress: bool | None = None) -> AreaMap:
    """Predict ``site`` (or its ``block``) as one mosaic and write its GeoTIFFs and polygons into ``out_dir``.

    Args:
        model: The trained network and its normaliser; the site is read in the model's channels.
        site: The site on its s2 grid; its label, if any, flags polygons that overlap the inventory.
        block: Only this block of the site (e.g. its test area), georeferenced as such.
        mode, overlap, tile, batch_size, progress: Mosaic settings (:func:`~slidemap.evaluation.mosaic.iter_mosaic`);
            ``tile`` defaults to the training window.
        threshold: Probability threshold of the binary map; defaults to the checkpoint's.
    """
    tile = int(tile or model.window)
    threshold = model.threshold if threshold is None else float(threshold)
    block = block or Block(0, 0, *site.shape)
    transform = site.transform @ Affine.translation(block.col0, block.row0)  # the block's upper-left pixel
    read, valid = site_reader(site, model.normaliser, block)
    start = time.perf_counter()
    chunks = iter_mosaic(model.net, read, valid.shape, tile, mode=mode, overlap=overlap, batch_size=batch_size,
                         progress=progress, desc=f"{site.name} ({mode})")
    prob, binary, paths = write_maps(out_dir, site.name, chunks, valid.shape, transform, site.crs, threshold)
    n_tiles = tile_count(valid.shape, tile, mode, overlap)
    elapsed = time.perf_counter() - start
    log.info("%s: %d x %d px mosaic (%s, %d tiles of %d px) predicted and written in %.2f s (%.0f tiles/s)",
             site.name, *valid.shape, mode, n_tiles, tile, elapsed, n_tiles / max(elapsed, 1e-9))
    start = time.perf_counter()
    label = site.label[block.slices] if site.label is not None else None
    landslides = vectorise(binary, transform, site.crs, prob, label)
    gpkg = write_gpkg(out_dir / f"{site.name}_landslides.gpkg", landslides, site.crs)
    log.info("%s: %d landslide polygon(s), %.3f km2, written in %.2f s", site.name, len(landslides),
             float(landslides.area_m2.sum()) / 1e6, time.perf_counter() - start)
    return AreaMap(prob, binary, landslides, [*paths, gpkg], transform)


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for mapping: ``auto`` = bf16 where the hardware has bf16 units (as training), else fp32."""
    if precision in ("32", "32-true", "fp32"):
        return None
    if precision in ("bf16", "bf16-mixed"):
        return torch.bfloat16
    if precision != "auto":
        raise InputError("--precision", f"unknown precision {precision!r}; choose auto, 32 or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def map_scene(model: TrainedModel, scene: SceneStrips, out_dir: Path, overlap: float = 0.5,
              tile: int | None = None, threshold: float | None = None, batch_size: int = 32,
              progress: bool | None = None, autocast: torch.dtype | None = None,
              name: str | None = None) -> list[Path]:
    """Map a whole scene read strip by strip: memory stays bounded whatever its size (a full S2 tile too).

    The same blended mosaic and GeoTIFF writer as :func:`map_area`; the polygons come from the written binary
    map (:func:`~slidemap.evaluation.polygons_streamed.write_polygons_streamed`), so no full-scene array or
    geometry list is ever held.
    """
    tile = int(tile or model.window)
    threshold = model.threshold if threshold is None else float(threshold)
    name = name or scene.name
    start = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=MAP_GDAL_CACHE_MB):  # GDAL's default (5% of RAM) would grow with the machine
        if autocast is not None:
            model.net.to(memory_format=torch.channels_last)
        chunks = iter_mosaic(model.net, scene.row_reader(model.normaliser), scene.shape, tile, mode="blend",
                             overlap=overlap, batch_size=batch_size, progress=progress, desc=f"{scene.name} (blend)",
                             autocast=autocast)
        _, _, paths = write_maps(out_dir, name, chunks, scene.shape, scene.transform, scene.crs, threshold, keep=False)
        elapsed = time.perf_counter() - start
        mpx = scene.shape[0] * scene.shape[1] / 1e6
        log.info("%s: %d x %d px mosaic predicted and written in %.1f s (%.2f Mpx/s)", name, *scene.shape,
                 elapsed, mpx / max(elapsed, 1e-9))
        start = time.perf_counter()
        gpkg = out_dir / f"{name}_landslides.gpkg"
        count, area = write_polygons_streamed(paths[1], gpkg, paths[0])
        log.info("%s: %d landslide polygon(s), %.3f km2, written in %.2f s", name, count, area / 1e6,
                 time.perf_counter() - start)
    return [*paths, gpkg]


def writable_folder(path: str | PathLike[str]) -> Path:
    """Create ``path`` if needed and make sure files can be written in it."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "output folder is an existing file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise InputError(folder, f"output folder not writable: {err.strerror or err}") from err
    return folder


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError("device", f"unknown device {name!r}: use auto, cpu or cuda") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device", "cuda requested but no GPU is available")
    return device


def _product_name(path: str) -> str:
    """A short file prefix from a product path: the SAFE/zip/STAC/folder name without its suffixes."""
    name = Path(path.rstrip("/")).name
    for suffix in (".zip", ".json", ".SAFE"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name or "scene"


def _scene_source(args: argparse.Namespace) -> str:
    """Check that exactly one of --scene and --s2/--dem is given; returns which."""
    products = getattr(args, "s2", None) or getattr(args, "dem", None)
    if args.scene and products:
        raise InputError("--scene", "give either --scene SITE_DIR or --s2 PRODUCT... --dem DEM..., not both")
    if args.scene:
        if getattr(args, "s2_pre", None):
            raise InputError("--s2-pre", "goes with --s2 PRODUCT...; a --scene folder brings its own s2_pre.tif")
        return "scene"
    if not getattr(args, "s2", None) or not getattr(args, "dem", None):
        raise InputError("--s2" if not getattr(args, "s2", None) else "--dem",
                         "missing: give --scene SITE_DIR, or Sentinel-2 products with --s2 and DEM files with --dem")
    return "products"


def map_command(args: argparse.Namespace) -> int:
    """``slidemap map``: maps of a whole scene, no inventory needed.

    The scene is a site folder (``--scene``) or Sentinel-2 products + DEM tiles (``--s2 --dem``, and pre-event
    products ``--s2-pre`` for a model with change inputs), which are built into a temporary site folder by
    :func:`slidemap.ingest.build_site` (the code of ``slidemap site``, clouds masked as no-data) and mapped the
    same way. A model whose channels need a pre-event image refuses a scene without one before any reading.
    """
    from slidemap.evaluation.checkpoint import load_checkpoint

    start = time.perf_counter()
    source = _scene_source(args)
    if not 0.0 < args.threshold < 1.0:
        raise InputError("--threshold", f"must lie in (0, 1), got {args.threshold}")
    if not 0.0 <= args.overlap < 1.0:
        raise InputError("--overlap", f"must lie in [0, 1), got {args.overlap}")
    out = writable_folder(args.out)
    device = pick_device("auto")
    autocast = inference_dtype(args.precision, device)
    model = load_checkpoint(args.ckpt).to(device)
    needs_pre = [c for c in model.channels if c in PRE_CHANNELS]
    if source == "products" and needs_pre and not getattr(args, "s2_pre", None):
        raise InputError(model.path, f"the model reads {', '.join(needs_pre)}, which need a pre-event image: "
                                     "give pre-event products with --s2-pre PRODUCT...")
    with tempfile.TemporaryDirectory(prefix=".slidemap-scene-", dir=out) as tmp:
        if source == "products":
            from slidemap.ingest.site_builder import build_site

            name = args.name or _product_name(args.s2[0])
            summary = build_site(args.s2, args.dem, Path(tmp) / name, bounds=args.bounds,
                                 bounds_crs=args.bounds_crs, mask_classes=args.mask_classes,
                                 allow_l1c=args.allow_l1c, allow_mixed_dates=args.allow_mixed_dates,
                                 s2_pre=getattr(args, "s2_pre", None))
            log.info("scene %s built from %d product(s) in %.1f s: %.1f%% cloud-masked", name,
                     len(summary["products"]), time.perf_counter() - start, 100 * summary["masked_share"])
            folder = Path(summary["site"])
        else:
            folder = Path(args.scene)
            name = args.name or folder.name
        scene = SceneStrips(folder, channels=model.channels)
        paths = map_scene(model, scene, out, overlap=args.overlap, threshold=args.threshold, autocast=autocast,
                          name=name)
    log.info("mapped %s (%d x %d px) with %s in %.2f s: maps in %s", name, *scene.shape, model.model_name,
             time.perf_counter() - start, out)
    for path in paths:
        print(path)
    return 0
