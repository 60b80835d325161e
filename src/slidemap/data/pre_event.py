"""The optional pre-event image ``s2_pre.tif``: read onto the post-event s2 grid and checked against it.

A pre-event image may come on any grid, in any CRS and dtype (another tile, another UTM zone, a composite made
elsewhere); it is resampled bilinearly onto the s2 grid, as reflectance. The same function serves a whole site
(:func:`~slidemap.data.reader.read_site`) and a strip of a scene (:class:`~slidemap.data.scene.SceneStrips`): it
reads only the window of the file under the grid it is given (plus a margin) and resamples with a plain 2 x 2
bilinear kernel, so a pixel gets the same value whichever way it is read (up to GDAL's approximate transformer,
at most 1/8 of a source pixel, as for the DEM).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from slidemap.data.reader import (_covering_window, _disjoint, _reading, _s2_bounds_in, _shifted, _valid_mask,
                                  band_name)
from slidemap.data.site import BAND_NAMES
from slidemap.errors import InputError

PRE_FILE = "s2_pre.tif"
MIN_COVERAGE = 0.95
"""Share of the site's usable pixels the pre-event image must observe (valid, cloud-free); below it the change
channels would describe a different area than the labels, so the site is refused instead of silently shrunk."""

_EPS = 1e-6  # in pixels: offsets closer than this to an integer are on the same lattice


def pre_band_indexes(path: Path, src: Any, grid: dict[str, Any]) -> list[int]:
    """1-based indexes of B2, B3, B4, B8 in s2_pre.tif: by its band descriptions, else as in s2.tif.

    Bands without names can only be matched to s2.tif's when both files hold the same number of bands;
    anything else is a different band set and refused.
    """
    names = [band_name(d) if d else None for d in src.descriptions]
    if any(n in BAND_NAMES for n in names):
        missing = [b for b in BAND_NAMES if b not in names]
        if missing:
            listed = ", ".join(n or "?" for n in names)
            raise InputError(path, f"band {', '.join(missing)} not found (its band descriptions give [{listed}]); "
                                   f"pre- and post-event images must both hold {', '.join(BAND_NAMES)}")
        return [names.index(b) + 1 for b in BAND_NAMES]
    if src.count != grid["count"]:
        raise InputError(path, f"{src.count} unnamed band(s) but s2.tif has {grid['count']}: pre- and post-event "
                               f"images must hold the same bands; name them ({', '.join(BAND_NAMES)}) in the band "
                               "descriptions")
    return list(grid["band_indexes"])


def conversion(meta: dict[str, Any], dtype: np.dtype) -> tuple[float, float]:
    """(scale, offset) to reflectance: site.yaml ``pre_scale``/``pre_offset``, else s2.tif's ``scale``/``offset``
    (pre and post usually come from the same source), else integer DN / 10000 and floats as they are."""
    default_scale = 1.0 if dtype.kind == "f" else 1e-4
    scale = meta.get("pre_scale", meta.get("scale"))
    offset = meta.get("pre_offset", meta.get("offset"))
    return float(default_scale if scale is None else scale), float(offset or 0.0)


def _lattice_offset(src: Any, grid: dict[str, Any]) -> tuple[int, int] | None:
    """(col, row) of the grid's origin in ``src`` when both share CRS and pixel lattice (no resampling needed)."""
    s, t = src.transform, grid["transform"]
    if src.crs != grid["crs"] or s.b != 0 or s.d != 0 or t.b != 0 or t.d != 0:
        return None
    if not (math.isclose(s.a, t.a, rel_tol=1e-9) and math.isclose(s.e, t.e, rel_tol=1e-9)):
        return None
    col, row = (t.c - s.c) / s.a, (t.f - s.f) / s.e
    if abs(col - round(col)) > _EPS or abs(row - round(row)) > _EPS:
        return None
    return round(col), round(row)


def _to_reflectance(dn: np.ndarray, valid: np.ndarray, scale: float, offset: float) -> np.ndarray:
    refl = dn.astype(np.float32)
    if scale != 1.0:
        refl *= np.float32(scale)
    if offset != 0.0:
        refl += np.float32(offset)
    refl[:, ~valid] = np.nan
    return refl


def read_pre_event(path: Path, meta: dict[str, Any], grid: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """s2_pre.tif on ``grid`` (s2.tif's, or a strip of it): reflectance (4, H, W) float32, NaN where the image has
    no valid observation, and that valid mask.

    ``grid`` carries s2.tif's ``band_indexes`` and ``count`` (from :func:`~slidemap.data.reader.read_s2`), so an
    image without band names is read like s2.tif.
    """
    h, w = grid["shape"]
    out = np.full((len(BAND_NAMES), h, w), np.nan, np.float32)
    with _reading(path), rasterio.open(path) as src:
        if src.crs is None:
            raise InputError(path, "has no CRS; every input must be georeferenced")
        idx = pre_band_indexes(path, src, grid)
        scale, offset = conversion(meta, np.dtype(src.dtypes[idx[0] - 1]))
        lattice = _lattice_offset(src, grid)
        if lattice is not None:  # same grid (e.g. the same tile before the event): copy pixels, no resampling
            col, row = lattice
            c0, r0, c1, r1 = max(col, 0), max(row, 0), min(col + w, src.width), min(row + h, src.height)
            if c1 > c0 and r1 > r0:
                window = Window(c0, r0, c1 - c0, r1 - r0)
                dn = src.read(idx, window=window)
                valid = np.logical_and.reduce([_valid_mask(src, i, dn[k], window) for k, i in enumerate(idx)])
                out[:, r0 - row:r1 - row, c0 - col:c1 - col] = _to_reflectance(dn, valid, scale, offset)
        else:
            footprint = _s2_bounds_in(grid, src.crs)
            own = (min(src.bounds[0], src.bounds[2]), min(src.bounds[1], src.bounds[3]),
                   max(src.bounds[0], src.bounds[2]), max(src.bounds[1], src.bounds[3]))
            if footprint is None or not _disjoint(footprint, own):
                window = _covering_window(src, footprint)
                dn = src.read(idx, window=window)
                valid = np.logical_and.reduce([_valid_mask(src, i, dn[k], window) for k, i in enumerate(idx)])
                refl = _to_reflectance(dn, valid, scale, offset)
                src_transform = src.transform if window is None else _shifted(src.transform, window)
                for k in range(len(BAND_NAMES)):
                    # XSCALE/YSCALE=1: a plain 2 x 2 bilinear kernel, as for the DEM, whatever the pixel sizes
                    reproject(refl[k], out[k], src_transform=src_transform, src_crs=src.crs, src_nodata=np.nan,
                              dst_transform=grid["transform"], dst_crs=grid["crs"], dst_nodata=np.nan,
                              resampling=Resampling.bilinear, XSCALE=1, YSCALE=1)
    valid = np.isfinite(out).all(axis=0)
    out[:, ~valid] = np.nan
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


def extent_share(path: Path, grid: dict[str, Any]) -> float:
    """Share of the grid's area inside the extent of s2_pre.tif (a cheap check that reads no pixels)."""
    with _reading(path), rasterio.open(path) as src:
        if src.crs is None:
            raise InputError(path, "has no CRS; every input must be georeferenced")
        footprint = _s2_bounds_in(grid, src.crs)
        bounds = src.bounds
    if footprint is None:
        return 1.0
    left, bottom = max(footprint[0], min(bounds[0], bounds[2])), max(footprint[1], min(bounds[1], bounds[3]))
    right, top = min(footprint[2], max(bounds[0], bounds[2])), min(footprint[3], max(bounds[1], bounds[3]))
    area = (footprint[2] - footprint[0]) * (footprint[3] - footprint[1])
    inside = max(0.0, right - left) * max(0.0, top - bottom)
    return inside / area if area > 0 else 0.0

