"""Render Sentinel-2 reflectance of a synthetic site: land cover mixing, terrain shading, haze and noise."""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Polygon, box

from slidemap.data.synthetic import specs as S
from slidemap.data.synthetic.relief import fractal_field
from slidemap.data.synthetic.specs import SiteSpec

SUPERSAMPLE = 3


def coverage(polys: list[Polygon], shape: tuple[int, int]) -> np.ndarray:
    """Sub-pixel area fraction of the union of ``polys`` (mixed pixels at landslide boundaries)."""
    if not polys:
        return np.zeros(shape, np.float32)
    scaled = [affinity.scale(p, SUPERSAMPLE, SUPERSAMPLE, origin=(0, 0)) for p in polys]
    fine = rasterize(scaled, out_shape=(shape[0] * SUPERSAMPLE, shape[1] * SUPERSAMPLE), fill=0, dtype="uint8")
    return fine.reshape(shape[0], SUPERSAMPLE, shape[1], SUPERSAMPLE).mean(axis=(1, 3)).astype(np.float32)


def parcels(rng: np.random.Generator, shape: tuple[int, int], allowed: np.ndarray, count: int,
            size: tuple[float, float]) -> list[Polygon]:
    """Rotated rectangles (fields, clear-cuts) whose centres fall on ``allowed`` pixels."""
    idx = np.flatnonzero(allowed.ravel())
    if idx.size == 0:
        return []
    out = []
    angle = rng.uniform(0, 90)
    for seed in rng.choice(idx, size=count):
        r, c = divmod(int(seed), shape[1])
        w, h = rng.uniform(*size), rng.uniform(*size) * rng.uniform(0.5, 1.5)
        rect = affinity.rotate(box(-w / 2, -h / 2, w / 2, h / 2), angle + rng.normal(0, 4), origin=(0, 0))
        out.append(affinity.translate(rect, c, r))
    return out


def shading(spec: SiteSpec, slope: np.ndarray, aspect: np.ndarray) -> np.ndarray:
    """Illumination factor from the sun's elevation and azimuth on each slope (plus diffuse sky light)."""
    zen = np.radians(90.0 - spec.sun_elevation)
    s, a = np.radians(slope), aspect
    cos_i = np.cos(zen) * np.cos(s) + np.sin(zen) * np.sin(s) * np.cos(np.radians(spec.sun_azimuth) - a)
    direct = np.clip(cos_i, 0, None) / np.cos(zen)
    return (0.3 + 0.7 * direct).astype(np.float32)


def render(rng: np.random.Generator, spec: SiteSpec, terrain: dict[str, np.ndarray], slides: list[Polygon],
           shape: tuple[int, int]) -> np.ndarray:
    """Surface reflectance (4, H, W) float32 for bands B2, B3, B4, B8."""
    elev, slope, bed = terrain["elev"], terrain["slope"], terrain["bed"]
    n = shape[0] * shape[1]
    layers: list[tuple[np.ndarray, np.ndarray]] = []  # (cover fraction, spectrum (4,H,W) or (4,))

    vigour = 0.55 + 0.45 * fractal_field(rng, shape, 2.8)
    veg = np.asarray(spec.veg)[:, None, None] * 1.0
    grass_mix = np.clip(1.1 - vigour, 0, 1)
    if spec.name == "china":  # the forest thins out towards the tree line
        grass_mix = np.clip(grass_mix + (elev - 2550) / 400 + (35 - slope) / 40, 0, 1)  # meadows above the forest
    vegetation = (1 - grass_mix) * veg + grass_mix * S.DRY_GRASS[:, None, None]

    if spec.name == "taiwan":
        braid = fractal_field(rng, shape, 2.2) > 0.62
        layers.append((bed & braid, S.WATER))
        layers.append((bed & ~braid, S.GRAVEL[:, None, None] * (0.9 + 0.2 * fractal_field(rng, shape, 2.0))))
        old = terrain["old_scars"]  # earlier typhoons' scars, half re-vegetated: not in this event's inventory
        regrowth = rng.uniform(0.35, 0.75, len(old))
        for level in (0.4, 0.55, 0.7):
            group = [p for p, g in zip(old, regrowth) if abs(g - level) <= 0.075 + 1e-9]
            old_spec = (1 - level) * np.asarray(spec.soil)[:, None, None] * 0.95 + level * veg
            layers.append((coverage(group, shape), old_spec))
        outcrops = parcels(rng, shape, (slope > 30) & ~bed, max(1, n // 1500), (6, 18))  # cliffs and road cuts
        layers.append((coverage(outcrops, shape), S.ROCK[:, None, None] * (0.8 + 0.3 * fractal_field(rng, shape, 2.0))))
    elif spec.name == "china":
        treeline = 2950 + 200 * (fractal_field(rng, shape, 3.0) - 0.5)
        alpine = np.clip((elev - treeline) / 120, 0, 1)
        cliff = np.clip((slope - 42) / 8, 0, 1)
        scree_noise = fractal_field(rng, shape, 1.8)
        rock = np.clip(np.maximum(alpine * (0.35 + 0.65 * (slope > 30)), cliff) * (0.6 + 0.6 * scree_noise), 0, 1)
        layers.append((bed, S.WATER))
        layers.append((rock, S.ROCK[:, None, None] * (0.85 + 0.3 * scree_noise)))
    elif spec.name == "japan":  # the floodplains are farmland: fields in three states around a narrow river
        farmland = ((slope < 12) | bed) & (terrain["river_dist"] > 3)
        meadow = np.asarray(S.FIELD_GREEN * 0.6 + S.DRY_GRASS * 0.4)
        layers.append((bed, meadow))
        fields = parcels(rng, shape, farmland, max(4, int(farmland.sum()) // 500), (15, 40))
        states = rng.choice(3, size=len(fields), p=[0.45, 0.30, 0.25])
        for state, spectrum in zip(range(3), (S.FIELD_BARE, S.FIELD_STUBBLE, S.FIELD_GREEN)):
            layers.append((coverage([f for f, s in zip(fields, states) if s == state], shape), spectrum))
        layers.append((terrain["river_dist"] <= 3, S.WATER))
        cuts = parcels(rng, shape, (slope > 12) & ~bed, max(2, n // 3500), (15, 40))
        layers.append((coverage(cuts, shape), S.CLEARCUT))

    slide_cover = coverage(slides, shape)
    remnant = np.zeros(shape, np.float32)  # vegetation left standing inside each slide
    labels, count = ndimage.label(slide_cover > 0)
    remnant_per_slide = rng.uniform(*spec.remnant, count + 1).astype(np.float32)
    remnant = np.clip(remnant_per_slide[labels] + 0.15 * (fractal_field(rng, shape, 1.8) - 0.5), 0, 0.8)
    moist = 0.85 + 0.3 * fractal_field(rng, shape, 2.0)
    soil = np.asarray(spec.soil)[:, None, None] * moist
    slide_spec = (1 - remnant) * soil + remnant * veg
    layers.append((slide_cover, slide_spec))

    refl = vegetation.astype(np.float32)
    for frac, spectrum in layers:
        f = np.asarray(frac, np.float32)
        spectrum = np.asarray(spectrum, np.float32)
        if spectrum.ndim == 1:
            spectrum = spectrum[:, None, None]
        refl = (1 - f) * refl + f * spectrum
    texture = 1.0 + 0.08 * (fractal_field(rng, shape, 1.5) - 0.5)
    refl = refl * texture * shading(spec, slope, terrain["aspect"])
    haze_field = 0.7 + 0.6 * fractal_field(rng, shape, 3.5)
    refl = refl + spec.haze * np.array([1.0, 0.7, 0.5, 0.25], np.float32)[:, None, None] * haze_field
    refl = refl + rng.normal(0, 0.004, refl.shape).astype(np.float32)
    return np.clip(refl, 0.0005, 1.0).astype(np.float32)
