"""North-up raster grids: the one grid type of data/ and ingest/, windows on its lattice, footprints across CRSs.

A grid is only where pixels are (CRS, transform, shape). What a file holds besides (which bands, how many) travels
with the reader that needs it, not in the grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import array_bounds
from rasterio.warp import transform_bounds
from rasterio.windows import Window

LONLAT = CRS.from_epsg(4326)
LATTICE_EPS = 1e-6
"""In pixels: a coordinate closer than this to a pixel edge is on it (two grids closer than it share a lattice)."""


def shifted(transform: Affine, col: float, row: float) -> Affine:
    """The transform of pixel (col, row) as a new origin (spelled out: affine 3 deprecates ``*`` on tuples)."""
    t = transform
    return Affine(t.a, t.b, t.c + t.a * col + t.b * row, t.d, t.e, t.f + t.d * col + t.e * row)


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: CRS, affine transform and (rows, cols)."""

    crs: CRS
    transform: Affine
    shape: tuple[int, int]

    @classmethod
    def of(cls, src: Any) -> Grid:
        """The grid of an open rasterio dataset."""
        return cls(src.crs, src.transform, (src.height, src.width))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        return tuple(float(v) for v in array_bounds(*self.shape, self.transform))  # type: ignore[return-value]

    def window_grid(self, window: Window) -> Grid:
        """The grid of a whole-pixel window of this grid (offsets may be negative: the lattice goes on)."""
        shifted_transform = shifted(self.transform, int(window.col_off), int(window.row_off))
        return Grid(self.crs, shifted_transform, (int(window.height), int(window.width)))

    def rows(self, r0: int, r1: int) -> Grid:
        """The grid of rows ``[r0, r1)`` (a strip of a scene), every column."""
        return self.window_grid(Window(0, r0, self.shape[1], r1 - r0))

    def cover(self, bounds: Sequence[float]) -> Window:
        """The whole-pixel window of this grid's lattice that covers ``bounds``: edges move outward, never resample."""
        t = self.transform
        col0 = math.floor((bounds[0] - t.c) / t.a + LATTICE_EPS)
        col1 = math.ceil((bounds[2] - t.c) / t.a - LATTICE_EPS)
        row0 = math.floor((bounds[3] - t.f) / t.e + LATTICE_EPS)
        row1 = math.ceil((bounds[1] - t.f) / t.e - LATTICE_EPS)
        return Window(col0, row0, col1 - col0, row1 - row0)

    def offset_of(self, other: Grid) -> tuple[int, int] | None:
        """(col, row) of ``other``'s origin on this grid's lattice, or None if it is not on the same lattice."""
        s, t = other.transform, self.transform
        if other.crs != self.crs or not (math.isclose(s.a, t.a, rel_tol=1e-9) and math.isclose(s.e, t.e, rel_tol=1e-9)
                                         and s.b == t.b == 0 and s.d == t.d == 0):
            return None
        col, row = (s.c - t.c) / t.a, (s.f - t.f) / t.e
        if abs(col - round(col)) > LATTICE_EPS or abs(row - round(row)) > LATTICE_EPS:
            return None
        return round(col), round(row)

    def bounds_in(self, crs: Any) -> tuple[float, ...] | None:
        """The grid's bounds in another CRS (for a site-sized area this is well behaved); None if it cannot be had.

        Callers fall back to reading a whole file when there is no answer, so any failure is None, not an error.
        """
        try:
            b = transform_bounds(self.crs, crs, *self.bounds, densify_pts=21)
        except Exception:  # noqa: BLE001 - callers fall back to reading everything
            return None
        return b if all(map(math.isfinite, b)) and b[0] <= b[2] else None  # left > right: antimeridian, give up


def disjoint(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two (left, bottom, right, top) boxes in one CRS share no area."""
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def footprint(bounds: Sequence[float], src_crs: Any, dst_crs: Any, n: int = 32) -> shapely.Geometry:
    """A rectangle of ``src_crs`` as a polygon in ``dst_crs``, its edges densified so curved edges stay close."""
    src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    if src == dst:
        return shapely.box(*bounds)
    left, bottom, right, top = bounds
    t = np.linspace(0.0, 1.0, n, endpoint=False)
    xs = np.concatenate([left + (right - left) * t, np.full(n, right), right - (right - left) * t, np.full(n, left)])
    ys = np.concatenate([np.full(n, top), top - (top - bottom) * t, np.full(n, bottom), bottom + (top - bottom) * t])
    x, y = Transformer.from_crs(src.to_wkt(), dst.to_wkt(), always_xy=True).transform(xs, ys)
    return shapely.make_valid(shapely.Polygon(np.column_stack([x, y])))


def lonlat_bounds(geom: shapely.Geometry, crs: Any) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a geometry's bounds in lon/lat."""
    return tuple(float(v) for v in footprint(geom.bounds, crs, LONLAT).bounds)  # type: ignore[return-value]


def lonlat_text(geom: shapely.Geometry, crs: Any) -> str:
    """'lon W to E, lat S to N' of a geometry's bounds, 5 decimals (about a metre)."""
    w, s, e, n = lonlat_bounds(geom, crs)
    return f"lon {w:.5f} to {e:.5f}, lat {s:.5f} to {n:.5f}"


def fmt_bounds(bounds: Sequence[float], crs: Any) -> str:
    """Bounds and their CRS for a message: enough digits for degrees and for UTM metres alike."""
    name = crs.to_string() if hasattr(crs, "to_string") else CRS.from_user_input(crs).to_string()
    return "(" + ", ".join(f"{v:.10g}" for v in bounds) + f") [{name}]"
