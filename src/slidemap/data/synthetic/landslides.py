"""Synthetic landslide polygons: lognormal sizes, elongated downslope, sources on steep slopes."""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize
from scipy import ndimage
from shapely import affinity
from shapely.geometry import LineString, Polygon
from shapely.ops import unary_union

from slidemap.data.synthetic.specs import SiteSpec


def source_weights(spec: SiteSpec, slope: np.ndarray, elev: np.ndarray, bed: np.ndarray) -> np.ndarray:
    """Where landslides start: steep ground (logistic in slope), inside the site's elevation band, off the bed."""
    w = 1.0 / (1.0 + np.exp(-(slope - spec.slope_pref_deg) / 4.0))
    if spec.elev_pref is not None:
        lo, hi = spec.elev_pref
        w = w * np.clip(1.0 - np.maximum(lo - elev, elev - hi) / 80.0, 0.02, 1.0)
    w = np.where(bed, 0.0, w)
    return (w / w.sum()).ravel()


def body_polygon(rng: np.random.Generator, area_px: float, elongation: float) -> Polygon:
    """A teardrop with a wide scarp at the top (x=0) tapering downslope (+x), area ``area_px``."""
    length = np.sqrt(4 * elongation * area_px / np.pi)
    half_w = length / elongation / 2
    t = np.linspace(0.0, 1.0, 14)
    prof = half_w * 1.25 * np.sin(np.pi * np.clip(t, 0.02, 0.98)) ** 0.55 * (1.0 - 0.35 * t)
    prof *= 1.0 + rng.normal(0, 0.12, t.size)
    xs = t * length
    upper = list(zip(xs, prof))
    lower = list(zip(xs[::-1], -prof[::-1] * (1.0 + rng.normal(0, 0.1, t.size))))
    poly = Polygon(upper + lower).buffer(0)
    if poly.geom_type != "Polygon" or poly.area <= 0:
        poly = Polygon([(0, -half_w), (length, 0), (0, half_w)])
    return affinity.scale(poly, *(2 * [np.sqrt(area_px / poly.area)]), origin=(0, 0))


def runout_tail(start: tuple[float, float], down_r: np.ndarray, down_c: np.ndarray, bed: np.ndarray,
                width: float, max_steps: int) -> Polygon | None:
    """Debris tail following steepest descent from the toe until it reaches the river bed."""
    r, c = start
    pts = [(c, r)]
    rows, cols = bed.shape
    for _ in range(max_steps):
        ir, ic = int(r), int(c)
        if not (0 <= ir < rows and 0 <= ic < cols):
            break
        r, c = r + 3.0 * down_r[ir, ic], c + 3.0 * down_c[ir, ic]
        pts.append((c, r))
        if 0 <= int(r) < rows and 0 <= int(c) < cols and bed[int(r), int(c)]:
            pts.append((c + 3.0 * down_c[ir, ic], r + 3.0 * down_r[ir, ic]))
            break
    if len(pts) < 3:
        return None
    return LineString(pts).buffer(width / 2, cap_style="round")


def make_landslides(rng: np.random.Generator, spec: SiteSpec, terrain: dict[str, np.ndarray],
                    shape: tuple[int, int]) -> list[Polygon]:
    """Landslide polygons in pixel coordinates (x=col, y=row) until the site's landslide area fraction is met."""
    weights = source_weights(spec, terrain["slope"], terrain["elev"], terrain["bed"])
    down_r = ndimage.uniform_filter(terrain["down_r"], 9)
    down_c = ndimage.uniform_filter(terrain["down_c"], 9)
    target = spec.slide_fraction * shape[0] * shape[1]
    mu = np.log(spec.slide_mean_px) - spec.slide_sigma**2 / 2
    polys: list[Polygon] = []
    mask = np.zeros(shape, np.uint8)
    covered = 0.0
    batch = max(8, int(0.25 * target / spec.slide_mean_px))
    while covered < target and len(polys) < 100_000:
        seeds = rng.choice(weights.size, size=batch, p=weights)
        new: list[Polygon] = []
        for seed in seeds:
            r, c = divmod(int(seed), shape[1])
            area = max(float(rng.lognormal(mu, spec.slide_sigma)), spec.slide_min_px)
            elong = rng.uniform(*spec.elongation)
            with_tail = rng.random() < spec.runout_share
            body_area = area * (0.65 if with_tail else 1.0)
            body = body_polygon(rng, body_area, elong)
            angle = np.degrees(np.arctan2(down_r[r, c], down_c[r, c])) + rng.normal(0, 10)
            body = affinity.rotate(body, angle, origin=(0, 0))
            body = affinity.translate(body, c + 0.5, r + 0.5)
            if with_tail:
                length = np.sqrt(4 * elong * body_area / np.pi)
                toe = (r + length * down_r[r, c], c + length * down_c[r, c])
                width = max(length / elong * 0.45, 2.0)
                tail = runout_tail(toe, down_r, down_c, terrain["bed"], width, max_steps=int(0.35 * area / width))
                if tail is not None:
                    body = unary_union([body, tail]).buffer(0.5).buffer(-0.5)
                    if body.geom_type != "Polygon":
                        body = max(getattr(body, "geoms", [body]), key=lambda g: g.area)
            new.append(body.simplify(0.2))
        polys.extend(new)
        rasterize(new, out=mask, default_value=1)  # each polygon is burnt in once
        covered = float(mask.sum())
        batch = max(8, int(batch * 0.5))
    return polys
