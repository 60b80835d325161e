"""Landslide maps of an area or a whole scene from a trained checkpoint: GeoTIFFs and polygons.

Per mapped area ``<name>``: the probability and binary GeoTIFFs of :mod:`slidemap.mapping.rasters` and
``<name>_landslides.gpkg`` (one polygon per predicted landslide with its area in m2). Every file is written
under a temporary name and renamed when complete.

The model is one checkpoint or an :class:`~slidemap.mapping.ensemble.Ensemble` (checkpoints x test-time views):
probabilities are calibrated (each checkpoint's temperature) and, with more than one prediction per pixel, their
standard deviation is written as ``<name>_uncertainty.tif`` and averaged per polygon.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
import torch
from affine import Affine

from slidemap.data.loading.scene import SceneStrips
from slidemap.data.sites.site import Site
from slidemap.data.tiling.split import Block
from slidemap.errors import InputError
from slidemap.mapping.checkpoint import TrainedModel, chosen_threshold
from slidemap.mapping.ensemble import Ensemble
from slidemap.mapping.mosaic import MAP_TILE, default_overlap, fit_tile, iter_mosaic, site_reader, tile_count
from slidemap.mapping.polygons import Landslides, vectorise, write_gpkg
from slidemap.mapping.polygons_streamed import write_polygons_streamed
from slidemap.mapping.provenance import check_synthetic_model, provenance_tags, write_gpkg_provenance
from slidemap.mapping.rasters import write_maps
from slidemap.mapping.unit_guard import check_scene

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH_PIXELS = 32 * 64 * 64
"""Pixels per forward pass of a scene map (at most 32 tiles): 32 tiles of 64 px, 8 of 128 px, one of 512 px (a
512 px tile's activations in the paper's U-Net take about 32 MiB per feature map of 32 channels in fp32: a batch of
32 such tiles would take gigabytes)."""
MAP_GDAL_CACHE_MB = 256
"""GDAL block cache while a scene map is written: dirty tiles wait there, so it bounds part of the map's memory."""


@dataclass(frozen=True, eq=False)
class AreaMap:
    """What mapping one area produced: the arrays (also on disk) and the files written."""

    probability: np.ndarray
    binary: np.ndarray
    landslides: Landslides
    paths: list[Path]
    transform: Affine
    uncertainty: np.ndarray | None = None


def as_ensemble(model: TrainedModel | Ensemble) -> Ensemble:
    """One checkpoint as an ensemble of one (no test-time views): its calibrated probabilities, no spread. An
    ensemble, or another engine's model that stands for one (:class:`~slidemap.mapping.onnx_engine.OnnxModel`), as
    it is."""
    return Ensemble([model]) if isinstance(model, TrainedModel) else model


def map_area(model: TrainedModel | Ensemble, site: Site, out_dir: Path, block: Block | None = None, mode: str = "blend",
             overlap: float = 0.5, tile: int | None = None, threshold: float | None = None, batch_size: int = 16,
             progress: bool | None = None, synthetic_model: bool = False) -> AreaMap:
    """Predict ``site`` (or its ``block``) as one mosaic and write its GeoTIFFs and polygons into ``out_dir``.

    Args:
        model: The trained network (or ensemble) and its normaliser; the site is read in the model's channels.
        site: The site on its s2 grid; its label, if any, flags polygons that overlap the inventory.
        block: Only this block of the site (e.g. its test area), georeferenced as such.
        mode, overlap, tile, batch_size, progress: Mosaic settings (:func:`~slidemap.mapping.mosaic.iter_mosaic`);
            ``tile`` defaults to the training window.
        threshold: Probability threshold of the binary map; defaults to the checkpoint's.
        synthetic_model: The model was trained only on synthetic sites and allowed on this one: the maps say so.
    """
    model = as_ensemble(model)
    tile = model.map_tile(tile, model.window)  # as eval.py and the training's test maps
    threshold = chosen_threshold(model, threshold)
    block = block or Block(0, 0, *site.shape)
    transform = site.transform @ Affine.translation(block.col0, block.row0)  # the block's upper-left pixel
    read, valid = site_reader(site, model.normaliser, block)
    start = time.perf_counter()
    chunks = iter_mosaic(model, read, valid.shape, tile, mode=mode, overlap=overlap, batch_size=batch_size,
                         progress=progress, desc=f"{site.name} ({mode})")
    sd = np.full(valid.shape, np.nan, np.float32) if model.spread else None

    def kept(parts: Iterator[tuple[np.ndarray, ...]]) -> Iterator[tuple[np.ndarray, ...]]:
        for r0, *arrays in parts:  # the area is held anyway (its metrics): keep the spread for the polygons
            if sd is not None:
                sd[r0:r0 + arrays[1].shape[0]] = arrays[1]
            yield r0, *arrays

    tags = provenance_tags(model, threshold, tile, synthetic_model)
    prob, binary, paths = write_maps(out_dir, site.name, kept(chunks), valid.shape, transform, site.crs, threshold,
                                     uncertainty=model.spread, tags=tags)
    n_tiles = tile_count(valid.shape, tile, mode, overlap)
    elapsed = time.perf_counter() - start
    log.info("%s: %d x %d px mosaic (%s, %d tiles of %d px) predicted and written in %.2f s (%.0f tiles/s)",
             site.name, *valid.shape, mode, n_tiles, tile, elapsed, n_tiles / max(elapsed, 1e-9))
    start = time.perf_counter()
    label = site.label[block.slices] if site.label is not None else None
    landslides = vectorise(binary, transform, site.crs, prob, label, uncertainty=sd)
    gpkg = write_gpkg(out_dir / f"{site.name}_landslides.gpkg", landslides, site.crs)
    write_gpkg_provenance(gpkg, tags)
    log.info("%s: %d landslide polygon(s), %.3f km2, written in %.2f s", site.name, len(landslides),
             float(landslides.area_m2.sum()) / 1e6, time.perf_counter() - start)
    return AreaMap(prob, binary, landslides, [*paths, gpkg], transform, sd)


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


def produced_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, computed one ahead in a background thread: the next band of tiles runs through the network while
    the caller compresses and writes this one (torch and GDAL both release the GIL). An error in the producer is
    raised here. When the caller stops early (an error, or a signal turned into one), this returns at once: the
    producer, a daemon that writes nothing, drops what it is computing and ends (an interrupted ``slidemap`` then
    leaves without tearing down the interpreter under it: :func:`slidemap.cli.main`)."""
    box: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                box.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    break
            else:
                put((done, None))
        except BaseException as err:  # noqa: BLE001 -- handed to the consumer, which re-raises it
            put((done, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name="mosaic-producer", daemon=True).start()
    try:
        while True:
            item, err = box.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
    finally:
        stop.set()


def map_scene(model: TrainedModel | Ensemble, scene: SceneStrips, out_dir: Path, overlap: float | None = None,
              tile: int | None = None, threshold: float | None = None, batch_size: int | None = None,
              progress: bool | None = None, autocast: torch.dtype | None = None,
              name: str | None = None, allow_synthetic_model: bool = False) -> list[Path]:
    """Map a whole scene read strip by strip: memory stays bounded whatever its size (a full S2 tile too).

    The same blended mosaic and GeoTIFF writer as :func:`map_area`; the polygons come from the written binary
    map (:func:`~slidemap.mapping.polygons_streamed.write_polygons_streamed`), so no full-scene array or
    geometry list is ever held. ``tile`` defaults to :data:`~slidemap.mapping.mosaic.MAP_TILE` (or the training
    window when that is larger), ``overlap`` to
    :func:`~slidemap.mapping.mosaic.default_overlap` of the tile, ``batch_size`` to :data:`BATCH_PIXELS` worth of
    tiles. A model trained only on synthetic sites maps a real scene only with ``allow_synthetic_model`` (then every
    output carries the warning); every output carries the provenance tags.
    """
    model = as_ensemble(model)
    tile = model.map_tile(tile, max(MAP_TILE, model.window))
    overlap = default_overlap(tile) if overlap is None else overlap
    if tile > model.window and model.standardise is None:  # a large tile on a small scene: no more than the scene (the window's tiles as always)
        tile = fit_tile(tile, scene.shape)
    batch_size = batch_size or max(1, min(32, BATCH_PIXELS // tile ** 2))  # 32 tiles of 32 or 64 px, as before
    threshold = chosen_threshold(model, threshold)
    name = name or scene.name
    synthetic = check_synthetic_model(model, scene.meta, scene.folder, allow_synthetic_model)
    check_scene(model, scene)  # a scene in other units than the checkpoint's is refused before anything is written
    tags = provenance_tags(model, threshold, tile, synthetic)
    start = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=MAP_GDAL_CACHE_MB):  # GDAL's default (5% of RAM) would grow with the machine
        if autocast is not None:
            model.channels_last()
        # GDAL's own threads decode the scene's blocks and compress the map's, as many as torch has (a region
        # worker's share of the cores); not for the polygons, whose small strip reads they slow down (6.8 -> 7.6 s)
        with rasterio.Env(GDAL_NUM_THREADS=str(torch.get_num_threads())):
            chunks = iter_mosaic(model, scene.row_reader(model.normaliser), scene.shape, tile, mode="blend",
                                 overlap=overlap, batch_size=batch_size, progress=progress,
                                 desc=f"{scene.name} (blend)", autocast=autocast)
            _, _, paths = write_maps(out_dir, name, produced_ahead(chunks), scene.shape, scene.transform, scene.crs,
                                     threshold, keep=False, uncertainty=model.spread, tags=tags)
        elapsed = time.perf_counter() - start
        mpx = scene.shape[0] * scene.shape[1] / 1e6
        log.info("%s: %d x %d px mosaic (%d px tiles, overlap %.3g) predicted and written in %.1f s (%.2f Mpx/s)",
                 name, *scene.shape, tile, overlap, elapsed, mpx / max(elapsed, 1e-9))
        start = time.perf_counter()
        gpkg = out_dir / f"{name}_landslides.gpkg"
        count, area = write_polygons_streamed(paths[1], gpkg, paths[0],
                                              uncertainty_path=paths[2] if model.spread else None)
        write_gpkg_provenance(gpkg, tags)
        log.info("%s: %d landslide polygon(s), %.3f km2, written in %.2f s", name, count, area / 1e6,
                 time.perf_counter() - start)
    return [*paths, gpkg]


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
