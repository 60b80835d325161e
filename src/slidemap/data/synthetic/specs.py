"""Per-site parameters of the synthetic benchmark, taken from the paper's description of its three sites."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

SITES_FILE = Path(__file__).with_name("sites.yaml")
"""The per-site parameters: data, kept beside the code that reads them."""


@dataclass(frozen=True)
class SiteSpec:
    """Everything that makes one synthetic site look like its real counterpart.

    Reflectances are Sentinel-2 L2A surface reflectance for bands (B2, B3, B4, B8).
    """

    name: str
    epsg: int
    lon: float  # lower-left corner, degrees
    lat: float
    shape: tuple[int, int]  # rows, cols at scale 1 (10 m pixels): the paper's extent
    elev_min: float
    elev_max: float
    valley_scale_px: float  # distance over which valley sides rise: sets the typical slope
    rivers: int
    bed_half_width_px: tuple[float, float]  # flat river bed half width range
    slide_fraction: float  # landslide area / site area
    slide_mean_px: float  # mean landslide area in pixels (paper mean size / 100 m2)
    slide_sigma: float  # lognormal sigma of landslide areas
    slide_min_px: float
    elongation: tuple[float, float]  # length / width of the landslide body
    runout_share: float  # share of landslides with a debris tail down to the valley floor
    slope_pref_deg: float  # landslide source areas concentrate above this slope
    elev_pref: tuple[float, float] | None  # elevation band of landslide sources
    soil: tuple[float, float, float, float]  # fresh landslide surface
    remnant: tuple[float, float]  # range of the vegetation share left inside a landslide
    veg: tuple[float, float, float, float]  # dense vegetation
    haze: float  # additive path reflectance in B2
    sun_elevation: float
    sun_azimuth: float
    description: str

    def scaled_shape(self, scale: float) -> tuple[int, int]:
        """Extent for an area ``scale`` (1 = the paper's); never smaller than one test + val + train strip of 128."""
        f = math.sqrt(scale)
        rows = max(int(round(self.shape[0] * f)), 160)
        cols = max(int(round(self.shape[1] * f)), 448)
        return rows, cols


GRAVEL = np.array([0.105, 0.125, 0.140, 0.180])  # braided river bed (Taiwan)
WATER = np.array([0.045, 0.055, 0.045, 0.030])
ROCK = np.array([0.130, 0.145, 0.155, 0.190])  # limestone faces and scree (China)
DRY_GRASS = np.array([0.050, 0.080, 0.085, 0.240])
FIELD_BARE = np.array([0.070, 0.090, 0.115, 0.175])  # ploughed volcanic soil (Japan)
FIELD_STUBBLE = np.array([0.085, 0.105, 0.125, 0.215])
FIELD_GREEN = np.array([0.040, 0.075, 0.050, 0.360])
CLEARCUT = np.array([0.060, 0.085, 0.095, 0.215])  # logged hillslope: slash and grass
FIELD_STATES = (FIELD_BARE, FIELD_STUBBLE, FIELD_GREEN)


def load_sites(path: Path = SITES_FILE) -> dict[str, SiteSpec]:
    """The site specs of ``sites.yaml`` (one mapping of SiteSpec fields per site; lists become tuples)."""
    raw = yaml.safe_load(path.read_text())
    return {name: SiteSpec(name=name, **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
            for name, fields in raw.items()}


SITES: dict[str, SiteSpec] = load_sites()
