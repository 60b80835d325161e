"""Merge a region's job maps into one seamless map: one COG per layer and one GeoPackage of polygons.

Where footprints overlap, each pixel comes from one job: the one whose footprint centre is nearest among the jobs
with valid data there (so a product's cloud or no-data is filled by its neighbour, and nothing is counted twice).
Jobs in other UTM zones are warped (nearest neighbour: probabilities and classes are never blended) onto one target
grid in the target CRS. The merge walks the target grid block by block, so memory does not grow with the number of
tiles. The polygons are vectorised from the merged binary map, so a landslide cut by a tile edge is one polygon,
its area and mean probability computed over the whole of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from slidemap.errors import InputError
from slidemap.io import atomic_path, scratch_dir
from slidemap.mapping.polygons_streamed import write_polygons_streamed
from slidemap.mapping.provenance import TAG_PREFIX, write_gpkg_provenance
from slidemap.region.plan import Footprint
from slidemap.styles import write_raster_style

log = logging.getLogger(__name__)

LAYERS = {"probability": ("float32", float("nan")), "binary": ("uint8", 255), "uncertainty": ("float32", float("nan"))}
"""Output layers a job may have (``<job>_<layer>.tif``), with their dtype and nodata."""
BLOCK = 1024


@dataclass(frozen=True)
class JobMaps:
    """One finished job: its layer files and footprint."""

    name: str
    folder: Path
    footprint: Footprint

    def layer(self, layer: str) -> Path:
        return self.folder / f"{self.name}_{layer}.tif"


def target_crs(jobs: Sequence[JobMaps], crs: str | None = None) -> CRS:
    """``crs`` when given, else the CRS whose jobs cover the largest area (the UTM zone of most of the region)."""
    if crs:
        try:
            return CRS.from_user_input(crs)
        except Exception as err:  # noqa: BLE001 -- pyproj/rasterio raise several types for a bad CRS string
            raise InputError("--crs", f"unknown CRS {crs!r}: {err}") from err
    area: dict[str, float] = {}
    for job in jobs:
        area[job.footprint.crs] = area.get(job.footprint.crs, 0.0) + job.footprint.area()
    return CRS.from_user_input(max(area, key=area.__getitem__))


def target_grid(jobs: Sequence[JobMaps], crs: CRS) -> tuple[Affine, int, int]:
    """The grid covering every job's map in ``crs``, at the finest job pixel size, aligned to whole pixels."""
    bounds, res = [], math.inf
    for job in jobs:
        with rasterio.open(job.layer("probability")) as src:
            bounds.append(transform_bounds(src.crs, crs, *src.bounds, densify_pts=21))
            if src.crs == crs:
                res = min(res, abs(src.transform.a))
    if not math.isfinite(res):  # no job in the target CRS: the pixel size of the first, as metres
        with rasterio.open(jobs[0].layer("probability")) as src:
            res = abs(src.transform.a)
    west, south = math.floor(min(b[0] for b in bounds) / res) * res, math.floor(min(b[1] for b in bounds) / res) * res
    east, north = math.ceil(max(b[2] for b in bounds) / res) * res, math.ceil(max(b[3] for b in bounds) / res) * res
    return Affine(res, 0, west, 0, -res, north), round((east - west) / res), round((north - south) / res)


def _centre(job: JobMaps, crs: CRS) -> tuple[float, float]:
    b = job.footprint.bounds
    x, y = Transformer.from_crs(CRS.from_user_input(job.footprint.crs), crs, always_xy=True).transform(
        (b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    return float(x), float(y)


def merge_region(jobs: Sequence[JobMaps], out: Path, crs: str | None = None) -> list[Path]:
    """Write ``region_<layer>.tif`` (COG) for each layer every job has, and ``region_landslides.gpkg``."""
    if not jobs:
        raise InputError(out, "no finished job to merge")
    dst_crs = target_crs(jobs, crs)
    transform, width, height = target_grid(jobs, dst_crs)
    centres = [_centre(j, dst_crs) for j in jobs]
    layers = [layer for layer in LAYERS if all(j.layer(layer).is_file() for j in jobs)]
    log.info("merging %d job(s) into %d x %d px in %s (%s)", len(jobs), height, width, dst_crs.to_string(),
             ", ".join(layers))
    paths: list[Path] = []
    with scratch_dir(out, "region-merge") as tmp:  # tagged: a killed merge's staging goes with the next write
        staged = {layer: Path(tmp) / f"region_{layer}.tif" for layer in layers}
        _merge_blocks(jobs, staged, centres, dst_crs, transform, width, height)
        tags = merged_tags(jobs)
        for path in staged.values():  # the COG copy below keeps them
            with rasterio.open(path, "r+") as d:
                d.update_tags(**tags)
        for layer, path in staged.items():  # COG with overviews, then into place atomically
            final = out / f"region_{layer}.tif"
            with atomic_path(final) as part:
                rasterio.shutil.copy(path, part, driver="COG", compress="deflate", overview_resampling=(
                    "mode" if layer == "binary" else "average"), BIGTIFF="IF_SAFER")
            write_raster_style(final)
            paths.append(final)
        gpkg = out / "region_landslides.gpkg"
        count, area = write_polygons_streamed(staged["binary"], gpkg, staged["probability"])
        write_gpkg_provenance(gpkg, tags)
        log.info("region: %d landslide polygon(s), %.3f km2", count, area / 1e6)
        paths.append(gpkg)
    return paths


def merged_tags(jobs: Sequence[JobMaps]) -> dict[str, str]:
    """The provenance of a region's maps: its jobs' (one model and settings for all) and how many products."""
    with rasterio.open(jobs[0].layer("probability")) as src:
        tags = {k: v for k, v in src.tags().items() if k.startswith(TAG_PREFIX)}
    return {**tags, f"{TAG_PREFIX}PRODUCTS": str(len(jobs))}


def _merge_blocks(jobs: Sequence[JobMaps], staged: dict[str, Path], centres: list[tuple[float, float]],
                  crs: CRS, transform: Affine, width: int, height: int) -> None:
    """Per target block: each job's layers warped onto it, and each pixel taken from the nearest valid job."""
    common = dict(driver="GTiff", width=width, height=height, count=1, crs=crs, transform=transform, tiled=True,
                  blockxsize=256, blockysize=256, compress="deflate", BIGTIFF="IF_SAFER")
    with ExitStack() as stack:
        dst = {layer: stack.enter_context(rasterio.open(path, "w", dtype=LAYERS[layer][0], nodata=LAYERS[layer][1],
                                                          **common)) for layer, path in staged.items()}
        warped = [{layer: stack.enter_context(WarpedVRT(stack.enter_context(rasterio.open(j.layer(layer))), crs=crs,
                                                        transform=transform, width=width, height=height,
                                                        resampling=Resampling.nearest))
                   for layer in staged} for j in jobs]
        for r0 in range(0, height, BLOCK):
            for c0 in range(0, width, BLOCK):
                window = Window(c0, r0, min(BLOCK, width - c0), min(BLOCK, height - r0))
                _merge_window(window, warped, dst, centres, transform)


def _merge_window(window: Window, warped: list[dict[str, WarpedVRT]], dst: dict[str, rasterio.DatasetReader],
                  centres: list[tuple[float, float]], transform: Affine) -> None:
    rows, cols = np.mgrid[window.row_off:window.row_off + window.height, window.col_off:window.col_off + window.width]
    xs, ys = transform * (cols + 0.5, rows + 0.5)
    best = np.full(rows.shape, np.inf)
    choice = np.full(rows.shape, -1, np.int64)
    values: dict[str, list[np.ndarray]] = {layer: [] for layer in dst}
    for k, (layers, (cx, cy)) in enumerate(zip(warped, centres)):
        for layer, vrt in layers.items():
            values[layer].append(vrt.read(1, window=window))
        binary = values["binary"][-1]
        ok = binary != 255  # the job's valid pixels (probability NaN there too)
        dist = np.where(ok, (xs - cx) ** 2 + (ys - cy) ** 2, np.inf)
        closer = dist < best
        best[closer], choice[closer] = dist[closer], k
    for layer, stack in values.items():
        fill = LAYERS[layer][1]
        out = np.full(rows.shape, fill, np.dtype(LAYERS[layer][0]))
        for k, arr in enumerate(stack):
            pick = choice == k
            out[pick] = arr[pick]
        dst[layer].write(out, 1, window=window)
