"""Reading rasters the one way every site input is read: errors named by file, valid masks, windows, resampling.

s2.tif, s2_pre.tif, dem.tif and the ingest readers all open files here, so a library error always becomes one
InputError naming the file, and a pixel's validity (nodata, NaN, GDAL mask bands) is decided in one place.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.errors
import rasterio
from pyproj.exceptions import CRSError as ProjCRSError
from pyproj.exceptions import ProjError
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.warp import reproject
from rasterio.windows import Window, from_bounds

from slidemap.data.sites.grid import Grid, shifted
from slidemap.errors import InputError

OPEN_ERRORS = (RasterioError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, ProjError,
               ProjCRSError, OSError)
"""What rasterio, pyogrio and pyproj raise on a file they cannot read."""

COVER_MARGIN_PX = 2
"""Source pixels kept around a footprint: a bilinear kernel at its edge still has its neighbours."""


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn a library error while reading ``path`` into a one-line InputError naming it."""
    try:
        yield
    except OPEN_ERRORS as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].replace(f"'{path}'", "file")
        raise InputError(path, f"cannot read: {first[:200]}") from err


@contextmanager
def open_raster(path: Path) -> Iterator[Any]:
    """Open a site raster for reading; an error while it is open, or a missing CRS (nothing could bring it onto
    the s2 grid), is an InputError naming it."""
    with reading(path), rasterio.open(path) as src:
        if src.crs is None:
            raise InputError(path, "has no CRS; every input must be georeferenced")
        yield src


def own_bounds(src: Any) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a raster whatever the signs of its pixel sizes."""
    b = src.bounds
    return min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])


def valid_mask(src: Any, index: int, data: np.ndarray, window: Window | None = None) -> np.ndarray:
    """Valid pixels of one band: not nodata and finite; GDAL mask bands (alpha, internal masks) honoured."""
    flags = src.mask_flag_enums[index - 1]
    if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
        return src.read_masks(index, window=window) > 0
    valid = np.isfinite(data) if data.dtype.kind == "f" else np.ones(data.shape, bool)
    nodata = src.nodatavals[index - 1]
    if nodata is not None and not math.isnan(nodata):
        valid &= data != nodata
    return valid


def read_valid(src: Any, indexes: Sequence[int], window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bands ``indexes`` (k, H, W) as stored and the pixels valid in every one of them."""
    data = src.read(list(indexes), window=window)
    valid = np.logical_and.reduce([valid_mask(src, i, data[k], window) for k, i in enumerate(indexes)])
    return data, valid


def covering_window(src: Any, footprint: Sequence[float] | None) -> Window | None:
    """The window of ``src`` covering a footprint (in its CRS) plus a margin; None means read it whole.

    A DEM mosaic or a pre-event tile can be far larger than a site, so only this window is read.
    """
    if footprint is None:
        return None
    try:
        w = from_bounds(*footprint, transform=src.transform)
    except Exception:  # noqa: BLE001 - e.g. a rotated DEM grid: read it whole
        return None
    m = COVER_MARGIN_PX
    win = Window(math.floor(w.col_off) - m, math.floor(w.row_off) - m, math.ceil(w.width) + 2 * m + 1,
                 math.ceil(w.height) + 2 * m + 1)
    return win.intersection(Window(0, 0, src.width, src.height))


def reproject_onto(data: np.ndarray, src: Any, window: Window | None, grid: Grid, out: np.ndarray) -> None:
    """Resample one float band read from ``window`` of ``src`` (NaN = no data) bilinearly into ``out`` on ``grid``.

    XSCALE/YSCALE=1: a plain 2 x 2 bilinear kernel whatever the pixel sizes. Left alone, GDAL widens the kernel when
    the source is finer than the grid, and its asymmetric sampling then tilts planes by up to ~0.5 degrees.
    """
    src_transform = src.transform if window is None else shifted(src.transform, window.col_off, window.row_off)
    reproject(data, out, src_transform=src_transform, src_crs=src.crs, src_nodata=np.nan,
              dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
              resampling=Resampling.bilinear, XSCALE=1, YSCALE=1)
