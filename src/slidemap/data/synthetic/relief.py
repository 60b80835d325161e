"""Synthetic terrain: fractal relief carved by a river network, so slopes and valleys sit where they would."""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize
from scipy import ndimage
from shapely.geometry import LineString

from slidemap.data.synthetic.specs import SiteSpec


def fractal_field(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """A 1/f^beta random field in [0, 1] by spectral synthesis (larger beta = smoother)."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.sqrt(kx**2 + ky**2)
    k[0, 0] = np.inf
    spectrum = k ** (-beta / 2) * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    field = np.fft.irfft2(spectrum, s=shape)
    field -= field.min()
    return (field / max(field.max(), 1e-12)).astype(np.float32)


def river_lines(rng: np.random.Generator, shape: tuple[int, int], count: int) -> list[LineString]:
    """Meandering rivers as polylines in pixel coordinates: a trunk along the long axis and tributaries."""
    rows, cols = shape
    lines: list[LineString] = []
    for i in range(count):
        if i == 0:  # trunk crossing the site along its long axis
            start = np.array([rng.uniform(0.3, 0.7) * rows, -10.0])
            heading = 0.0
        else:  # tributary entering from the top or bottom edge
            top = rng.random() < 0.5
            start = np.array([-10.0 if top else rows + 10.0, rng.uniform(0.1, 0.9) * cols])
            heading = (np.pi / 2 if top else -np.pi / 2) + rng.uniform(-0.5, 0.5)
        pts = [start.copy()]
        pos, turn = start.copy(), 0.0
        for _ in range(4 * (rows + cols) // 10):
            turn = 0.85 * turn + rng.normal(0, 0.06)
            heading += turn
            if i == 0:
                heading = float(np.clip(heading, -0.9, 0.9))
            pos = pos + 10.0 * np.array([np.sin(heading), np.cos(heading)])
            pts.append(pos.copy())
            if not (-20 <= pos[0] <= rows + 20 and -20 <= pos[1] <= cols + 20):
                break
        lines.append(LineString([(p[1], p[0]) for p in pts]))  # (x=col, y=row)
    return lines


def carve_terrain(rng: np.random.Generator, spec: SiteSpec, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Elevation (m) on the 10 m grid plus the river-bed mask and each pixel's distance to a river (px).

    The fractal gives ridges and texture; valleys rise from each river with ``valley_scale_px``, and the
    river bed itself is flat (a braided bed in Taiwan, a narrow stream in China, a floodplain in Japan).
    """
    lines = river_lines(rng, shape, spec.rivers)
    centre = rasterize([(ln, 1) for ln in lines], out_shape=shape, fill=0, dtype="uint8").astype(bool)
    dist = ndimage.distance_transform_edt(~centre).astype(np.float32)
    width = spec.bed_half_width_px[0] + (spec.bed_half_width_px[1] - spec.bed_half_width_px[0]) * fractal_field(
        rng, shape, 3.5
    )
    bed = dist <= width
    away = np.clip(dist - width, 0, None)
    valley = 1.0 - np.exp(-away / spec.valley_scale_px)
    ridges = 0.55 + 0.45 * fractal_field(rng, shape, 3.2)
    rough = fractal_field(rng, shape, 2.4) - 0.5
    relief = spec.elev_max - spec.elev_min
    tilt = np.linspace(0.0, 0.08, shape[1], dtype=np.float32)[None, :]
    elev = spec.elev_min + relief * (0.9 * valley * ridges + 0.06 * rough * valley + tilt * 0.5)
    elev = np.where(bed, spec.elev_min + relief * tilt * 0.5, elev)
    return {"elev": elev.astype(np.float32), "bed": bed, "river_dist": dist}


def slope_aspect(elev: np.ndarray, pixel_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slope (deg), aspect (rad, downslope direction) and the downslope unit vector (drow, dcol)."""
    gr, gc = np.gradient(elev.astype(np.float64), pixel_m)
    slope = np.degrees(np.arctan(np.hypot(gr, gc)))
    norm = np.hypot(gr, gc) + 1e-9
    down_r, down_c = -gr / norm, -gc / norm
    aspect = np.arctan2(down_c, -down_r)  # clockwise from north (row axis points south)
    return slope.astype(np.float32), aspect.astype(np.float32), down_r.astype(np.float32), down_c.astype(np.float32)
