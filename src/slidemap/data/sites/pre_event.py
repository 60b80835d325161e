"""The optional pre-event image ``s2_pre.tif``: read onto the post-event s2 grid and checked against it.

A pre-event image may come on any grid, in any CRS and dtype (another tile, another UTM zone, a composite made
elsewhere); it is resampled bilinearly onto the s2 grid, as reflectance. The same function serves a whole site
and a strip of a scene (both through :func:`~slidemap.data.sites.reader.read_inputs`): it reads only the window of the
file under the grid it is given (plus a margin) and resamples with a plain 2 x 2 bilinear kernel, so a pixel gets
the same value whichever way it is read (up to GDAL's approximate transformer, at most 1/8 of a source pixel, as
for the DEM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from slidemap.data.sites.bands import ImageBands, pre_band_indexes
from slidemap.data.sites.grid import Grid, disjoint
from slidemap.data.sites.raster import covering_window, open_raster, own_bounds, read_valid, reproject_onto
from slidemap.data.sites.reflectance import check_reflectance, to_reflectance
from slidemap.errors import InputError

MIN_COVERAGE = 0.95
"""Share of the site's usable pixels the pre-event image must observe (valid, cloud-free); below it the change
channels would describe a different area than the labels, so the site is refused instead of silently shrunk."""


def pre_reflectance(meta: dict[str, Any], dn: np.ndarray, valid: np.ndarray, source: Path) -> np.ndarray:
    """Reflectance of pre-event DNs, NaN where invalid: site.yaml ``pre_scale``/``pre_offset``, else s2.tif's
    ``scale``/``offset`` (pre and post usually come from the same source), else the defaults for the dtype."""
    scale = meta.get("pre_scale", meta.get("scale"))
    offset = meta.get("pre_offset", meta.get("offset"))
    return to_reflectance(dn, valid, scale, offset, fill=np.nan, unit=str(meta.get("units") or "reflectance"),
                          source=source)


def read_pre_event(path: Path, meta: dict[str, Any], grid: Grid,
                   held: ImageBands) -> tuple[np.ndarray, np.ndarray]:
    """The pre-event image (s2_pre.tif or image_pre.tif) on ``grid`` (the site image's, or a strip of it): the
    site image's bands (C, H, W) float32 in its units, NaN where the image has no valid observation, and that
    valid mask.

    ``held`` is what the site's image holds (from :func:`~slidemap.data.sites.reader.read_image`), so an image without
    band names is read like it.
    """
    h, w = grid.shape
    out = np.full((len(held.names), h, w), np.nan, np.float32)
    with open_raster(path) as src:
        idx = pre_band_indexes(path, src, held)
        lattice = Grid.of(src).offset_of(grid)
        if lattice is not None:  # same grid (e.g. the same tile before the event): copy pixels, no resampling
            col, row = lattice
            c0, r0, c1, r1 = max(col, 0), max(row, 0), min(col + w, src.width), min(row + h, src.height)
            if c1 > c0 and r1 > r0:
                window = Window(c0, r0, c1 - c0, r1 - r0)
                refl = pre_reflectance(meta, *read_valid(src, idx, window), path)
                out[:, r0 - row:r1 - row, c0 - col:c1 - col] = refl
        else:
            footprint = grid.bounds_in(src.crs)
            if footprint is None or not disjoint(footprint, own_bounds(src)):
                window = covering_window(src, footprint)
                refl = pre_reflectance(meta, *read_valid(src, idx, window), path)
                for k in range(len(held.names)):
                    reproject_onto(refl[k], src, window, grid, out[k])
    valid = np.isfinite(out).all(axis=0)
    out[:, ~valid] = np.nan
    check_reflectance(out, valid, path, meta.get("pre_scale", meta.get("scale")), str(meta.get("units") or
                                                                                       "reflectance"))
    return out, valid


def check_coverage(path: Path, pre_valid: np.ndarray, site_valid: np.ndarray) -> float:
    """Share of the site's usable pixels with a valid pre-event observation; refused below ``MIN_COVERAGE``."""
    usable = int(site_valid.sum())
    share = float((pre_valid & site_valid).sum()) / usable if usable else 0.0
    if share < MIN_COVERAGE:
        raise InputError(path, f"covers only {share:.1%} of the site's valid s2.tif pixels (outside the image, "
                               f"no-data or cloud there); need at least {MIN_COVERAGE:.0%}: use a pre-event image "
                               "over the whole site, or several (slidemap site --s2-pre makes a greenest-pixel "
                               "composite that fills clouds)")
    return share


def extent_share(path: Path, grid: Grid) -> float:
    """Share of the grid's area inside the extent of s2_pre.tif (a cheap check that reads no pixels)."""
    with open_raster(path) as src:
        footprint = grid.bounds_in(src.crs)
        bounds = own_bounds(src)
    if footprint is None:
        return 1.0
    left, bottom = max(footprint[0], bounds[0]), max(footprint[1], bounds[1])
    right, top = min(footprint[2], bounds[2]), min(footprint[3], bounds[3])
    area = (footprint[2] - footprint[0]) * (footprint[3] - footprint[1])
    inside = max(0.0, right - left) * max(0.0, top - bottom)
    return inside / area if area > 0 else 0.0
