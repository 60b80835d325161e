"""Cloud mask from the Sentinel-2 scene classification (SCL, 20 m), brought onto the 10 m grid by nearest neighbour."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from slidemap.data.sites.grid import Grid
from slidemap.data.sites.raster import reading
from slidemap.errors import InputError
from slidemap.ingest.scl_classes import DEFAULT_MASK_CLASSES, SCL_CLASSES


_OUTSIDE = 255  # pixels the SCL raster does not reach: no classification, so no valid data either


def parse_mask_classes(values: Iterable[str | int] | None) -> tuple[int, ...]:
    """``--mask-classes`` as sorted SCL class numbers; accepts ``3 8 9`` and ``3,8,9``; empty masks nothing."""
    if values is None:
        return DEFAULT_MASK_CLASSES
    out: set[int] = set()
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                number = int(part)
            except ValueError:
                number = -1
            if number not in SCL_CLASSES:
                known = ", ".join(f"{k} {v}" for k, v in SCL_CLASSES.items())
                raise InputError("--mask-classes", f"{part!r} is not an SCL class; classes are {known}")
            out.add(number)
    return tuple(sorted(out))


def describe_classes(classes: Sequence[int]) -> dict[int, str]:
    """Class number -> legend, for provenance."""
    return {int(c): SCL_CLASSES[int(c)] for c in classes}


def _cover_window(src: rasterio.io.DatasetReader, bounds: Sequence[float]) -> Window | None:
    """The SCL window covering ``bounds`` (in the SCL's CRS) plus one pixel; None if they do not meet."""
    w = from_bounds(*bounds, transform=src.transform)
    col0, row0 = math.floor(w.col_off) - 1, math.floor(w.row_off) - 1
    col1, row1 = math.ceil(w.col_off + w.width) + 1, math.ceil(w.row_off + w.height) + 1
    col0, row0, col1, row1 = max(col0, 0), max(row0, 0), min(col1, src.width), min(row1, src.height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def scl_masked(path: Path, href: str, grid: Grid, classes: Sequence[int]) -> np.ndarray:
    """Pixels of ``grid`` whose SCL class is in ``classes`` (or that the SCL does not cover), as a bool array.

    Only the SCL window under the grid is read; nearest neighbour keeps classes whole (a 20 m pixel covers
    exactly four 10 m pixels of the same product).
    """
    with reading(path), rasterio.open(href) as src:
        if src.crs is None:
            raise InputError(path, f"{Path(href).name} (SCL) has no CRS")
        bounds = grid.bounds
        if src.crs != grid.crs:
            bounds = transform_bounds(grid.crs, src.crs, *bounds, densify_pts=21)
        window = _cover_window(src, bounds)
        scl = np.full(grid.shape, _OUTSIDE, np.uint8)
        if window is None:
            return np.ones(grid.shape, bool)
        data = src.read(1, window=window)
        window_transform = Grid.of(src).window_grid(window).transform
        reproject(data.astype(np.uint8, copy=False), scl, src_transform=window_transform,
                  src_crs=src.crs, dst_transform=grid.transform, dst_crs=grid.crs, src_nodata=None,
                  dst_nodata=_OUTSIDE, resampling=Resampling.nearest)
    return np.isin(scl, np.asarray(classes, np.uint8)) | (scl == _OUTSIDE)
