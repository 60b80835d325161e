"""The common result of every product reader: B2, B3, B4, B8 as float32 reflectance on the product's own grid.

A reader (SAFE, STAC item, band folder) only finds where each band lives and how its digital numbers become
reflectance (a :class:`Product`); :func:`read_window` then reads any window of any product the same way, so the
windowed, native-resolution reading and the cloud mask are written once.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from slidemap.data.sites.grid import Grid
from slidemap.data.sites.raster import reading
from slidemap.data.sites.site import BAND_NAMES
from slidemap.errors import InputError
from slidemap.ingest.scl import scl_masked

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BandFile:
    """One band in one raster, and how its digital numbers become reflectance: ``(DN + add) / quantification``.

    This is ESA's L2A formula; a STAC ``scale``/``offset`` pair maps onto it (quantification = 1/scale,
    add = offset/scale), and dividing keeps hand-checkable values exact in float32 ((1500 - 1000) / 10000 = 0.05).
    """

    href: str
    add: float = 0.0
    quantification: float = 1.0
    nodata: float | None = None
    index: int = 1


@dataclass(frozen=True)
class Product:
    """A Sentinel-2 product opened but not read: where B2, B3, B4, B8 (and SCL) live, its grid, its provenance."""

    path: Path
    kind: str
    name: str
    level: str
    date: str | None
    bands: dict[str, BandFile]
    scl: BandFile | None
    grid: Grid
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reflectance:
    """Reflectance of B2, B3, B4, B8 (float32, NaN where invalid) on one grid, with its masks and provenance.

    Attributes:
        bands: float32 (4, H, W); NaN wherever ``valid`` is False.
        valid: bool (H, W): not no-data in any band and not cloud-masked.
        masked: bool (H, W): removed by the SCL classes (cloud, shadow, ...), a subset of ``~valid``.
        grid: CRS, transform and shape.
        provenance: where the values came from and how they were converted.
    """

    bands: np.ndarray
    valid: np.ndarray
    masked: np.ndarray
    grid: Grid
    provenance: dict[str, Any]


def band_grid(path: Path, bands: dict[str, BandFile]) -> Grid:
    """The grid of the 10 m bands, checking that all four share it (they are never resampled)."""
    grids: dict[str, Grid] = {}
    for name in BAND_NAMES:
        href = bands[name].href
        with reading(path), rasterio.open(href) as src:
            if src.crs is None:
                raise InputError(path, f"{Path(href).name} has no CRS; Sentinel-2 bands must be georeferenced")
            grids[name] = Grid.of(src)
    ref = grids[BAND_NAMES[0]]
    if not ref.transform.is_rectilinear or ref.transform.a <= 0 or ref.transform.e >= 0:
        raise InputError(path, f"{Path(bands[BAND_NAMES[0]].href).name} is not on a north-up grid")
    for name, grid in grids.items():
        if grid.crs != ref.crs or grid.shape != ref.shape or not grid.transform.almost_equals(ref.transform):
            raise InputError(path, f"band {name} ({Path(bands[name].href).name}, {grid.shape[1]} x {grid.shape[0]} px) "
                                   f"is not on the grid of {BAND_NAMES[0]} ({ref.shape[1]} x {ref.shape[0]} px)")
    return ref


def check_conversion(path: Path, name: str, band: BandFile) -> None:
    """A band's quantification must be a positive finite number, its offset finite."""
    if not (math.isfinite(band.quantification) and band.quantification > 0 and math.isfinite(band.add)):
        raise InputError(path, f"band {name}: unusable conversion to reflectance "
                               f"(add {band.add}, quantification {band.quantification})")


def _read_band(path: Path, band: BandFile, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """One band's window at full resolution (no overview), as reflectance and a valid mask."""
    with reading(path), rasterio.open(band.href) as src:
        dn = src.read(band.index, window=window)
    valid = np.isfinite(dn) if dn.dtype.kind == "f" else np.ones(dn.shape, bool)
    if band.nodata is not None and not math.isnan(band.nodata):
        valid &= dn != band.nodata
    refl = dn.astype(np.float32)
    del dn
    if band.add:
        refl += np.float32(band.add)
    if band.quantification != 1.0:
        refl /= np.float32(band.quantification)
    return refl, valid


def read_window(product: Product, window: Window, mask_classes: Iterable[int]) -> Reflectance:
    """Read a whole-pixel window of a product's 10 m grid: reflectance, valid mask, SCL cloud mask.

    Only the window is decoded (rasterio windowed reads at full resolution, never an overview); the four bands
    and the SCL are read in parallel threads (GDAL releases the GIL while decoding JPEG 2000 or deflate), and
    the 20 m SCL comes onto the 10 m window by nearest neighbour.
    """
    grid = product.grid.window_grid(window)
    h, w = grid.shape
    classes = sorted(set(mask_classes))
    use_scl = product.scl is not None and bool(classes)
    with ThreadPoolExecutor(max_workers=min(len(BAND_NAMES) + use_scl, os.cpu_count() or 1)) as pool:
        reads = [pool.submit(_read_band, product.path, product.bands[name], window) for name in BAND_NAMES]
        scl = pool.submit(scl_masked, product.path, product.scl.href, grid, classes) if use_scl else None
        bands = np.empty((len(BAND_NAMES), h, w), np.float32)
        valid = np.ones((h, w), bool)
        for k, future in enumerate(reads):
            bands[k], band_valid = future.result()
            valid &= band_valid
        masked = scl.result() & valid if scl is not None else np.zeros((h, w), bool)
    valid &= ~masked
    bands[:, ~valid] = np.nan
    prov = {"window": [int(window.col_off), int(window.row_off), int(window.width), int(window.height)],
            "valid_share": float(valid.mean()) if valid.size else 0.0,
            "masked_share": float(masked.mean()) if masked.size else 0.0}
    log.debug("%s: read window %s, %.1f%% valid", product.name, prov["window"], 100 * prov["valid_share"])
    return Reflectance(bands=bands, valid=valid, masked=masked, grid=grid, provenance=prov)
