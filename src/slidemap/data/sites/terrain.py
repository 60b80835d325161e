"""Terrain derivatives on the s2 grid: Horn slope from a DEM and the true pixel size in metres behind it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from slidemap.errors import InputError

WGS84_A = 6378137.0
"""WGS84 semi-major axis (m)."""
WGS84_F = 1.0 / 298.257223563
"""WGS84 flattening."""
_WGS84_E2 = WGS84_F * (2.0 - WGS84_F)


def _pad_linear(z: np.ndarray) -> np.ndarray:
    """Pad one pixel on each side by linear extrapolation (2*edge - inner).

    Plain edge replication halves the gradient on the border (the replicated column has zero difference);
    extrapolating keeps a tilted plane exact everywhere, so border pixels get their true slope. A NaN next to
    the border only reaches pad cells whose windows already contain that NaN, so propagation is unchanged.
    """
    p = np.pad(z, 1, mode="edge")
    if z.shape[0] > 1:
        p[0, 1:-1] = 2.0 * z[0] - z[1]
        p[-1, 1:-1] = 2.0 * z[-1] - z[-2]
    if z.shape[1] > 1:
        p[:, 0] = 2.0 * p[:, 1] - p[:, 2]
        p[:, -1] = 2.0 * p[:, -2] - p[:, -3]
    return p


def _as_rows(size: float | np.ndarray, height: int, name: str) -> np.ndarray | float:
    """A scalar pixel size, or a per-row one shaped (H, 1) to broadcast along columns."""
    arr = np.asarray(size, dtype=np.float64)
    if arr.ndim == 0:
        value = float(arr)
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
        return value
    if arr.shape != (height,):
        raise ValueError(f"{name} must be a scalar or have one value per row ({height},), got {arr.shape}")
    if not np.all(arr > 0):
        raise ValueError(f"{name} must be positive")
    return arr[:, None]


def horn_slope(dem: np.ndarray, dx_m: float | np.ndarray, dy_m: float | np.ndarray) -> np.ndarray:
    """Slope in degrees by Horn's (1981) 3x3 weighted differences.

    Args:
        dem: (H, W) elevation in metres; NaN marks missing elevation.
        dx_m: pixel width in metres, a scalar or one value per row (H,) (geographic grids shrink with latitude).
        dy_m: pixel height in metres, a scalar or one value per row (H,).

    Returns:
        float32 (H, W) slope in degrees. NaN wherever the 3x3 window (centre included) touches a NaN, because
        a slope from partial neighbours would be silently wrong. Borders are extrapolated linearly, so a plane
        has its true slope up to the edge.
    """
    z = np.asarray(dem, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"dem must be 2-D, got shape {z.shape}")
    h, w = z.shape
    dx = _as_rows(dx_m, h, "dx_m")
    dy = _as_rows(dy_m, h, "dy_m")
    p = _pad_linear(z)
    # Horn's kernels are separable: [1, 2, 1] smoothing across, central difference along.
    # dz/dx = ((c + 2f + i) - (a + 2d + g)) / 8dx, dz/dy = ((g + 2h + i) - (a + 2b + c)) / 8dy
    across_rows = p[:-2] + p[2:]
    across_rows += 2.0 * p[1:-1]
    across_cols = p[:, :-2] + p[:, 2:]
    across_cols += 2.0 * p[:, 1:-1]
    gx = across_rows[:, 2:] - across_rows[:, :-2]
    gx /= 8.0 * dx
    gy = across_cols[2:] - across_cols[:-2]
    gy /= 8.0 * dy
    slope = np.hypot(gx, gy, out=gx)  # in place: a 2000 x 2400 DEM stays well under a second
    np.arctan(slope, out=slope)
    np.degrees(slope, out=slope)
    slope[np.isnan(z)] = np.nan  # the 8 neighbours propagate NaN by arithmetic; the centre does not enter Horn
    return slope.astype(np.float32)


def _radii_of_curvature(lat_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Meridional (M) and prime-vertical (N) radii of the WGS84 ellipsoid at the given latitudes."""
    s2 = np.sin(lat_rad) ** 2
    w = np.sqrt(1.0 - _WGS84_E2 * s2)
    m = WGS84_A * (1.0 - _WGS84_E2) / w**3
    n = WGS84_A / w
    return m, n


def pixel_size_m(
    crs: Any, transform: Affine, shape: tuple[int, int], path: str | None = None
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """True pixel size in metres, which Horn's slope needs (CRS units are not always metres).

    Args:
        crs: the grid's CRS (rasterio ``CRS`` or anything ``CRS.from_user_input`` accepts).
        transform: the grid's affine transform.
        shape: (H, W) of the grid.
        path: file to name in the error for an unusable CRS.

    Returns:
        ``(dx_m, dy_m)``: floats for a projected CRS (|a|, |e| times the unit's size in metres, so feet
        work); arrays (H,) for a geographic CRS, from the WGS84 radii of curvature at each row's centre
        latitude.

    Raises:
        InputError: the CRS is neither projected nor geographic (e.g. geocentric or engineering).
    """
    crs = CRS.from_user_input(crs)
    t = transform
    # Column and row step lengths in CRS units (equal to |a| and |e| for a north-up grid; rotation-safe).
    step_x = math.hypot(t.a, t.d)
    step_y = math.hypot(t.b, t.e)
    if crs.is_projected:
        factor = float(crs.linear_units_factor[1])
        return step_x * factor, step_y * factor
    if crs.is_geographic:
        to_rad = float(crs.units_factor[1])
        h, w = int(shape[0]), int(shape[1])
        lat = t.d * (w / 2.0) + t.e * (np.arange(h, dtype=np.float64) + 0.5) + t.f  # row centres, mid-column
        m, n = _radii_of_curvature(lat * to_rad)
        dx = n * np.cos(lat * to_rad) * step_x * to_rad
        dy = m * step_y * to_rad
        return dx, dy
    raise InputError(path, f"CRS {crs.to_string() or 'unnamed'} is neither projected nor geographic; "
                           "cannot tell the pixel size in metres")
