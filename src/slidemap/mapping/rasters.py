"""Probability and binary GeoTIFFs of a mapped area: tiled, compressed, with overviews, written atomically.

Per area ``<name>``: ``<name>_probability.tif`` (float32, NaN nodata) and ``<name>_binary.tif`` (uint8: 1
landslide, 0 none, 255 nodata), on the area's own grid; with an ensemble or test-time views also
``<name>_uncertainty.tif`` (float32, NaN nodata: the per-pixel standard deviation of the probability). Training's
test maps, eval.py and ``slidemap map`` all write through :func:`write_maps`, so every map opens alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.rio.overview import get_maximum_overview_level
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from slidemap.data.sites.site import Site
from slidemap.data.tiling.patches import Patches
from slidemap.data.tiling.split import Block
from slidemap.io import atomic_path
from slidemap.styles import write_raster_style

OVERVIEW_MIN_PX = 64
"""Overviews are built down to this size (GDAL's default stops at 256, which leaves small maps without)."""


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


DEFLATE_LEVEL = 1
"""Fast deflate: on a 2745 x 2745 px map the probability GeoTIFF is 1.4% larger than at GDAL's default level 6 and
written (with overviews) 40% faster, 0.86 -> 0.52 s on one thread (benchmarks/README.md, large tiles)."""


LAYERS = {"probability": "landslide probability", "binary": "landslide (probability > {threshold:g})",
          "uncertainty": "standard deviation of the landslide probability (ensemble members x test-time views)"}
"""Each GeoTIFF layer of a map and its band description."""


def layer_paths(out_dir: Path, name: str, uncertainty: bool = False) -> dict[str, Path]:
    """The GeoTIFFs of area ``name`` by layer (probability, binary, and uncertainty when there is a spread)."""
    kinds = [k for k in LAYERS if k != "uncertainty" or uncertainty]
    return {k: out_dir / f"{name}_{k}.tif" for k in kinds}


def write_maps(out_dir: Path, name: str, chunks: Iterable[tuple[int, np.ndarray] | tuple[int, np.ndarray, np.ndarray]],
               shape: tuple[int, int], transform: Affine, crs: Any, threshold: float, keep: bool = True,
               uncertainty: bool = False,
               tags: dict[str, str] | None = None) -> tuple[np.ndarray | None, np.ndarray | None, list[Path]]:
    """Stream row chunks ``(row0, probabilities)`` into the probability and binary GeoTIFFs; with
    ``uncertainty``, chunks are ``(row0, probabilities, standard deviations)`` and the uncertainty GeoTIFF is
    written too. ``tags``: metadata every file carries (the maps' provenance, :mod:`slidemap.mapping.provenance`).

    Returns the full probability and binary arrays (the polygons and metrics of a test area need them; None
    with ``keep=False``, for scenes too large to hold) and the paths (probability, binary[, uncertainty]).
    """
    height, width = shape
    prob = np.full(shape, np.nan, np.float32) if keep else None
    binary = np.full(shape, 255, np.uint8) if keep else None
    paths = layer_paths(out_dir, name, uncertainty)
    common = dict(driver="GTiff", width=width, height=height, count=1, crs=crs, transform=transform, tiled=True,
                  blockxsize=256, blockysize=256, compress="deflate", zlevel=DEFLATE_LEVEL, BIGTIFF="IF_SAFER")
    floats = dict(dtype="float32", nodata=float("nan"), predictor=3)
    with ExitStack() as files:
        tmp = {k: files.enter_context(atomic_path(p)) for k, p in paths.items()}
        dst = {k: files.enter_context(rasterio.open(t, "w", **common, **(dict(dtype="uint8", nodata=255)
                                                                          if k == "binary" else floats)))
               for k, t in tmp.items()}
        for r0, part, *spread in chunks:
            part_binary = binarise(part, threshold)
            window = Window(0, r0, width, part.shape[0])
            dst["probability"].write(part, 1, window=window)
            dst["binary"].write(part_binary, 1, window=window)
            if uncertainty:
                dst["uncertainty"].write(spread[0], 1, window=window)
            if keep:
                prob[r0:r0 + part.shape[0]] = part
                binary[r0:r0 + part.shape[0]] = part_binary
        factors = overview_factors(width, height)
        for kind, d in dst.items():
            resampling = Resampling.mode if kind == "binary" else Resampling.average
            d.build_overviews(factors, resampling)
            d.update_tags(ns="rio_overview", resampling=resampling.name)
            d.set_band_description(1, LAYERS[kind].format(threshold=threshold))
            if tags:
                d.update_tags(**tags)
    for path in paths.values():  # every GeoTIFF is complete and in place here
        write_raster_style(path)  # a .qml sidecar by the file's name, so QGIS opens it styled
    return prob, binary, list(paths.values())


def stitch(patches: Patches, probs: np.ndarray, block: Block) -> np.ndarray:
    """Place per-patch probabilities (N, w, w) back onto the block; pixels no patch covers are NaN."""
    out = np.full((block.rows, block.cols), np.nan, np.float32)
    w = probs.shape[-1]
    for (r, c), p in zip(patches.origins, probs):
        r0, c0 = r - block.row0, c - block.col0
        h, wd = min(w, block.rows - r0), min(w, block.cols - c0)
        out[r0:r0 + h, c0:c0 + wd] = p[:h, :wd]
    return out


def write_prediction(out_dir: Path, site: Site, block: Block, prob: np.ndarray, threshold: float = 0.5) -> list[Path]:
    """Probability (float32, NaN nodata) and binary (uint8, 255 nodata) GeoTIFFs of a block on the site's grid."""
    rows, cols = block.slices
    prob = np.where(site.valid[rows, cols], prob, np.nan).astype(np.float32)
    transform = window_transform(Window(block.col0, block.row0, block.cols, block.rows), site.transform)
    _, _, paths = write_maps(out_dir, site.name, [(0, prob)], prob.shape, transform, site.crs, threshold)
    return paths
