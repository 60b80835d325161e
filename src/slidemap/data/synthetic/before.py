"""The pre-event image of a synthetic site: the same ground weeks before the event, with what really differs.

What a responder's "before" composite looks like next to the "after" image (issue 8):

- none of the event's landslides; the same rivers, rock, fields and older scars (the confounders stay in both);
- older scars a little less re-vegetated (they are younger then), and some of them where the event's landslides
  reactivated them (rockfall chutes and scree in China, old typhoon scars in Taiwan): little change there;
- a seasonal shift of vegetation greenness that varies over the site (phenology follows elevation and aspect);
- false change between the dates: fields harvested or sown, slopes logged (Japan), gravel bars and their
  vegetation reworked by the flood that came with the event (Taiwan, China);
- another sun angle and haze, new sensor noise, a sub-pixel misregistration against the post-event grid;
- one cloud with its shadow: the thick core is no-data (as the scene classification masks it), the thin rim is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from shapely.geometry import Polygon

from slidemap.data.synthetic import specs as S
from slidemap.data.synthetic.relief import fractal_field
from slidemap.data.synthetic.scene import Ground, atmosphere, compose, coverage, shading
from slidemap.data.synthetic.specs import SiteSpec

CLOUD = np.array([0.38, 0.37, 0.37, 0.40], np.float32)  # thick cumulus, nearly flat in the visible and NIR
GRAVEL_BAR_VEG = np.array([0.035, 0.065, 0.050, 0.280])  # grass and shrubs on gravel bars before the flood


@dataclass(frozen=True)
class BeforeSpec:
    """How one site's pre-event date differs from its post-event one."""

    greenness: float  # mean change of vegetation NIR (and opposite in red) before vs after; + = greener before
    greenness_spread: float  # its spatial variation (phenology differs with elevation and exposure)
    meadow_green_up: float  # share of dry grass that was still green before (alpine meadows senesce)
    sun_elevation: float
    sun_azimuth: float
    haze: float
    scar_regrowth_lag: float  # older scars had this much less vegetation before
    bed_rework: float  # share of the river bed whose bars (and their vegetation) the flood reworked
    cloud_share: float  # share of the site under the masked cloud core (its shadow adds about as much)
    reactivated: float  # share of the event's landslides that reactivated an older, half re-vegetated scar


BEFORE: dict[str, BeforeSpec] = {
    # Morakot (August 2009); the pre-event image is from the dry season before it: browner, hazier, lower sun
    "taiwan": BeforeSpec(greenness=-0.06, greenness_spread=0.10, meadow_green_up=0.0, sun_elevation=44.0,
                         sun_azimuth=140.0, haze=0.045, scar_regrowth_lag=0.15, bed_rework=0.45, cloud_share=0.012,
                         reactivated=0.25),
    # Jiuzhaigou (8 August 2017); the pre-event image is from high summer: meadows above the forest still green
    "china": BeforeSpec(greenness=0.07, greenness_spread=0.10, meadow_green_up=0.45, sun_elevation=70.0,
                        sun_azimuth=110.0, haze=0.012, scar_regrowth_lag=0.0, bed_rework=0.35, cloud_share=0.012,
                        reactivated=0.3),
    # Iburi (6 September 2018); the pre-event image is from July: crops standing, fields not yet harvested
    "japan": BeforeSpec(greenness=0.08, greenness_spread=0.08, meadow_green_up=0.2, sun_elevation=62.0,
                        sun_azimuth=150.0, haze=0.035, scar_regrowth_lag=0.0, bed_rework=0.0, cloud_share=0.012,
                        reactivated=0.05),
}

FIELD_BEFORE = np.array([  # P(state before | state after) for bare, stubble, green fields: harvest and sowing
    [0.20, 0.25, 0.55],  # bare after: most were standing crops (harvested and ploughed)
    [0.10, 0.25, 0.65],  # stubble after: most were standing crops (harvested)
    [0.30, 0.10, 0.60],  # green after: some were bare (sown since)
])
LOGGED_SHARE = 0.45  # clear-cuts of the post image that were still forest before


def seasonal_vegetation(rng: np.random.Generator, before: BeforeSpec, ground: Ground, shape: tuple[int, int]
                        ) -> np.ndarray:
    """The vegetated background before the event: greener or browner by season, in patches."""
    phenology = before.greenness + before.greenness_spread * (2 * fractal_field(rng, shape, 3.0) - 1)
    factor = np.stack([1 - 0.3 * phenology, 1 + 0.1 * phenology, 1 - 0.6 * phenology, 1 + phenology]).astype(
        np.float32)
    green_up = before.meadow_green_up * (fractal_field(rng, shape, 2.5) > 0.35)
    grass = ground.grass_mix * (1 - green_up)
    meadow_green = S.FIELD_GREEN[:, None, None] * 0.5 + ground.veg * 0.5
    vegetation = (1 - ground.grass_mix) * ground.veg + (ground.grass_mix - grass) * meadow_green
    vegetation = vegetation + grass * S.DRY_GRASS[:, None, None]
    return vegetation * factor


def layers_before(rng: np.random.Generator, spec: SiteSpec, before: BeforeSpec, ground: Ground,
                  terrain: dict[str, np.ndarray], shape: tuple[int, int]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The post-event land-cover layers as they were before: same places, other states where the dates differ."""
    bed = terrain["bed"]
    reworked = bed & (fractal_field(rng, shape, 2.2) < before.bed_rework)
    braid = bed & (fractal_field(rng, shape, 2.2) > 0.62)  # Taiwan's braids ran elsewhere before the flood
    fields, cuts = ground.parts.get("fields", []), ground.parts.get("cuts", [])
    earlier = [int(rng.choice(3, p=FIELD_BEFORE[s])) for s in ground.parts.get("states", [])]
    standing = rng.random(len(cuts)) < LOGGED_SHARE
    out: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name, frac, spectrum in ground.layers:
        if spec.name == "taiwan" and name == "water":
            frac = braid
        elif spec.name == "taiwan" and name == "gravel":
            frac = bed & ~braid
        elif name.startswith("old_scars_"):
            level = float(name.rsplit("_", 1)[1]) - before.scar_regrowth_lag
            spectrum = (1 - level) * np.asarray(spec.soil)[:, None, None] * 0.95 + level * ground.veg
        elif name.startswith("fields_"):
            state = int(name.rsplit("_", 1)[1])
            frac = coverage([f for f, s in zip(fields, earlier) if s == state], shape)
        elif name == "clearcuts":
            frac = coverage([c for c, s in zip(cuts, standing) if not s], shape)
        out.append((name, frac, spectrum))
        last_bed_layer = "gravel" if spec.name == "taiwan" else "water"
        if name == last_bed_layer and before.bed_rework > 0:  # vegetated bars the flood scoured: a loss of green
            bar_ground = S.GRAVEL if spec.name == "taiwan" else S.ROCK
            out.append(("bars", reworked, GRAVEL_BAR_VEG * 0.5 + bar_ground * 0.5))
    return out


def reactivated_scars(rng: np.random.Generator, spec: SiteSpec, before: BeforeSpec, ground: Ground,
                      slides: list[Polygon], shape: tuple[int, int]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Older scars under a share of the event's landslides: already half bare before the event."""
    chosen = [p for p in slides if rng.random() < before.reactivated]
    regrowth = rng.uniform(0.25, 0.65, len(chosen))
    out = []
    for level in (0.35, 0.55):
        group = [p for p, g in zip(chosen, regrowth) if abs(g - level) <= 0.1 + 1e-9]
        spectrum = (1 - level) * np.asarray(spec.soil)[:, None, None] * 0.9 + level * ground.veg
        out.append((f"reactivated_{level}", coverage(group, shape), spectrum))
    return out


def misregister(rng: np.random.Generator, refl: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Shift the image content by 0.2-0.5 px in a random direction (bilinear), as co-registration leaves it."""
    size, angle = rng.uniform(0.2, 0.5), rng.uniform(0, 2 * np.pi)
    shift = (float(size * np.sin(angle)), float(size * np.cos(angle)))
    return np.stack([ndimage.shift(b, shift, order=1, mode="nearest") for b in refl]), shift


def cloud(rng: np.random.Generator, before: BeforeSpec, refl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paint one cloud and its shadow; return the image and the no-data mask of their thick cores."""
    h, w = refl.shape[1:]
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
    radius = np.sqrt(before.cloud_share * h * w / np.pi)
    r0, c0 = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
    blob = np.exp(-((rr - r0) ** 2 + (cc - c0) ** 2) / (2 * (1.15 * radius) ** 2))
    blob = blob * (0.75 + 0.5 * fractal_field(rng, (h, w), 2.6))
    edge = np.quantile(blob, 1 - before.cloud_share)
    opacity = np.clip((blob - 0.55 * edge) / (0.9 * edge), 0, 1)  # core is opaque, rim thin
    az = np.radians(before.sun_azimuth)  # shadow falls away from the sun (row axis points south)
    offset = 1.6 * radius * np.array([np.cos(az), -np.sin(az)])
    shadow = ndimage.shift(opacity, offset, order=1, mode="constant", cval=0.0)
    refl = refl * (1 - 0.65 * shadow)
    refl = (1 - opacity) * refl + opacity * CLOUD[:, None, None]
    return refl.astype(np.float32), (opacity >= 0.5) | (shadow >= 0.5)


def render_before(rng: np.random.Generator, spec: SiteSpec, ground: Ground, terrain: dict[str, np.ndarray],
                  slides: list[Polygon], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pre-event reflectance (4, H, W), its no-data mask (cloud cores) and what was drawn (for site.yaml)."""
    before = BEFORE[spec.name]
    vegetation = seasonal_vegetation(rng, before, ground, shape)
    layers = layers_before(rng, spec, before, ground, terrain, shape)
    refl = compose(vegetation, layers + reactivated_scars(rng, spec, before, ground, slides, shape))
    refl = refl * ground.texture * shading(before.sun_elevation, before.sun_azimuth, terrain["slope"],
                                           terrain["aspect"])
    refl, shift = misregister(rng, refl)
    refl = atmosphere(rng, refl, before.haze, shape)
    refl, nodata = cloud(rng, before, refl)
    return refl, nodata, {"misregistration_px": [round(shift[0], 3), round(shift[1], 3)],
                          "cloud_masked_share": round(float(nodata.mean()), 4)}
