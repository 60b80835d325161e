"""Render Sentinel-2 reflectance of a synthetic site: land cover mixing, terrain shading, haze and noise."""

from __future__ import annotations

from dataclasses import dataclass, field

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


def shading(sun_elevation: float, sun_azimuth: float, slope: np.ndarray, aspect: np.ndarray) -> np.ndarray:
    """Illumination factor from the sun's elevation and azimuth on each slope (plus diffuse sky light)."""
    zen = np.radians(90.0 - sun_elevation)
    s, a = np.radians(slope), aspect
    cos_i = np.cos(zen) * np.cos(s) + np.sin(zen) * np.sin(s) * np.cos(np.radians(sun_azimuth) - a)
    direct = np.clip(cos_i, 0, None) / np.cos(zen)
    return (0.3 + 0.7 * direct).astype(np.float32)


@dataclass
class Ground:
    """The ground of a site before light and atmosphere, kept so the pre-event image shows the same land.

    ``layers`` are named (cover fraction, spectrum) pairs painted in order over ``vegetation``; ``parts`` holds
    the parcels the pre-event date redraws in other states (Japan's fields and clear-cuts), ``texture`` the
    sub-pixel brightness pattern that both dates share.
    """

    vegetation: np.ndarray
    grass_mix: np.ndarray
    veg: np.ndarray
    layers: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    parts: dict[str, object] = field(default_factory=dict)
    texture: np.ndarray | None = None


def compose(base: np.ndarray, layers: list[tuple[str, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Paint each layer over ``base`` by its cover fraction (linear spectral mixing)."""
    refl = base.astype(np.float32)
    for _, frac, spectrum in layers:
        f = np.asarray(frac, np.float32)
        spectrum = np.asarray(spectrum, np.float32)
        if spectrum.ndim == 1:
            spectrum = spectrum[:, None, None]
        refl = (1 - f) * refl + f * spectrum
    return refl


def atmosphere(rng: np.random.Generator, refl: np.ndarray, haze: float, shape: tuple[int, int]) -> np.ndarray:
    """Add path radiance (haze, strongest in blue, patchy) and sensor noise; clip to valid reflectance."""
    haze_field = 0.7 + 0.6 * fractal_field(rng, shape, 3.5)
    refl = refl + haze * np.array([1.0, 0.7, 0.5, 0.25], np.float32)[:, None, None] * haze_field
    refl = refl + rng.normal(0, 0.004, refl.shape).astype(np.float32)
    return np.clip(refl, 0.0005, 1.0).astype(np.float32)


def ground_cover(rng: np.random.Generator, spec: SiteSpec, terrain: dict[str, np.ndarray],
                 shape: tuple[int, int]) -> Ground:
    """Vegetation and each site's own land cover (the confounders of docs/architecture.md), without the event."""
    elev, slope, bed = terrain["elev"], terrain["slope"], terrain["bed"]
    n = shape[0] * shape[1]
    vigour = 0.55 + 0.45 * fractal_field(rng, shape, 2.8)
    veg = np.asarray(spec.veg)[:, None, None] * 1.0
    grass_mix = np.clip(1.1 - vigour, 0, 1)
    if spec.name == "china":  # the forest thins out towards the tree line
        grass_mix = np.clip(grass_mix + (elev - 2550) / 400 + (35 - slope) / 40, 0, 1)  # meadows above the forest
    vegetation = (1 - grass_mix) * veg + grass_mix * S.DRY_GRASS[:, None, None]
    ground = Ground(vegetation=vegetation, grass_mix=grass_mix, veg=veg)
    layers = ground.layers

    if spec.name == "taiwan":
        braid = fractal_field(rng, shape, 2.2) > 0.62
        layers.append(("water", bed & braid, S.WATER))
        layers.append(("gravel", bed & ~braid, S.GRAVEL[:, None, None] * (0.9 + 0.2 * fractal_field(rng, shape, 2.0))))
        old = terrain["old_scars"]  # earlier typhoons' scars, half re-vegetated: not in this event's inventory
        regrowth = rng.uniform(0.35, 0.75, len(old))
        for level in (0.4, 0.55, 0.7):
            group = [p for p, g in zip(old, regrowth) if abs(g - level) <= 0.075 + 1e-9]
            old_spec = (1 - level) * np.asarray(spec.soil)[:, None, None] * 0.95 + level * veg
            layers.append((f"old_scars_{level}", coverage(group, shape), old_spec))
        outcrops = parcels(rng, shape, (slope > 30) & ~bed, max(1, n // 1500), (6, 18))  # cliffs and road cuts
        layers.append(("outcrops", coverage(outcrops, shape),
                       S.ROCK[:, None, None] * (0.8 + 0.3 * fractal_field(rng, shape, 2.0))))
    elif spec.name == "china":
        treeline = 2950 + 200 * (fractal_field(rng, shape, 3.0) - 0.5)
        alpine = np.clip((elev - treeline) / 120, 0, 1)
        cliff = np.clip((slope - 42) / 8, 0, 1)
        scree_noise = fractal_field(rng, shape, 1.8)
        rock = np.clip(np.maximum(alpine * (0.35 + 0.65 * (slope > 30)), cliff) * (0.6 + 0.6 * scree_noise), 0, 1)
        layers.append(("water", bed, S.WATER))
        layers.append(("rock", rock, S.ROCK[:, None, None] * (0.85 + 0.3 * scree_noise)))
    elif spec.name == "japan":  # the floodplains are farmland: fields in three states around a narrow river
        farmland = ((slope < 12) | bed) & (terrain["river_dist"] > 3)
        meadow = np.asarray(S.FIELD_GREEN * 0.6 + S.DRY_GRASS * 0.4)
        layers.append(("meadow", bed, meadow))
        fields = parcels(rng, shape, farmland, max(4, int(farmland.sum()) // 500), (15, 40))
        states = rng.choice(3, size=len(fields), p=[0.45, 0.30, 0.25])
        for state, spectrum in zip(range(3), S.FIELD_STATES):
            layers.append((f"fields_{state}", coverage([f for f, s in zip(fields, states) if s == state], shape),
                           spectrum))
        layers.append(("water", terrain["river_dist"] <= 3, S.WATER))
        cuts = parcels(rng, shape, (slope > 12) & ~bed, max(2, n // 3500), (15, 40))
        layers.append(("clearcuts", coverage(cuts, shape), S.CLEARCUT))
        ground.parts.update(fields=fields, states=states, cuts=cuts)
    return ground


def event_scars(rng: np.random.Generator, spec: SiteSpec, slides: list[Polygon], shape: tuple[int, int],
                veg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The event's landslides: cover fraction and spectrum (fresh soil with some vegetation left standing)."""
    slide_cover = coverage(slides, shape)
    labels, count = ndimage.label(slide_cover > 0)
    remnant_per_slide = rng.uniform(*spec.remnant, count + 1).astype(np.float32)
    remnant = np.clip(remnant_per_slide[labels] + 0.15 * (fractal_field(rng, shape, 1.8) - 0.5), 0, 0.8)
    moist = 0.85 + 0.3 * fractal_field(rng, shape, 2.0)
    soil = np.asarray(spec.soil)[:, None, None] * moist
    return slide_cover, (1 - remnant) * soil + remnant * veg


def render(rng: np.random.Generator, spec: SiteSpec, terrain: dict[str, np.ndarray], slides: list[Polygon],
           shape: tuple[int, int]) -> tuple[np.ndarray, Ground]:
    """Post-event surface reflectance (4, H, W) float32 for bands B2, B3, B4, B8, and the ground it shows."""
    ground = ground_cover(rng, spec, terrain, shape)
    slide_cover, slide_spec = event_scars(rng, spec, slides, shape, ground.veg)
    refl = compose(ground.vegetation, ground.layers + [("event", slide_cover, slide_spec)])
    ground.texture = 1.0 + 0.08 * (fractal_field(rng, shape, 1.5) - 0.5)
    refl = refl * ground.texture * shading(spec.sun_elevation, spec.sun_azimuth, terrain["slope"], terrain["aspect"])
    return atmosphere(rng, refl, spec.haze, shape), ground
