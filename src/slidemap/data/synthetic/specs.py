"""Per-site parameters of the synthetic benchmark, taken from the paper's description of its three sites."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


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

SITES: dict[str, SiteSpec] = {
    "taiwan": SiteSpec(
        name="taiwan", epsg=32651, lon=120.80, lat=22.95, shape=(1720, 2720),
        elev_min=300.0, elev_max=2600.0, valley_scale_px=260.0, rivers=3, bed_half_width_px=(6.0, 22.0),
        slide_fraction=0.067, slide_mean_px=380.0, slide_sigma=0.9, slide_min_px=13.0, elongation=(2.0, 4.5),
        runout_share=0.5, slope_pref_deg=28.0, elev_pref=None,
        soil=(0.075, 0.105, 0.150, 0.215), remnant=(0.1, 0.5), veg=(0.022, 0.045, 0.028, 0.330),
        haze=0.030, sun_elevation=62.0, sun_azimuth=95.0,
        description="Western Taitung, Typhoon Morakot 2009: large shallow slides with long runouts into braided "
        "river beds (bright, flat confounders)",
    ),
    "china": SiteSpec(
        name="china", epsg=32648, lon=103.88, lat=33.18, shape=(680, 947),
        elev_min=1978.0, elev_max=3711.0, valley_scale_px=150.0, rivers=2, bed_half_width_px=(2.0, 5.0),
        slide_fraction=0.043, slide_mean_px=125.0, slide_sigma=0.8, slide_min_px=11.0, elongation=(1.5, 3.0),
        runout_share=0.0, slope_pref_deg=40.0, elev_pref=None,
        soil=(0.165, 0.195, 0.235, 0.285), remnant=(0.0, 0.25), veg=(0.028, 0.050, 0.035, 0.300),
        haze=0.018, sun_elevation=65.0, sun_azimuth=125.0,
        description="Shuzheng Valley, Jiuzhaigou earthquake 2017: rockfalls on steep faces and scree above the tree "
        "line (bare-rock confounders)",
    ),
    "japan": SiteSpec(
        name="japan", epsg=32654, lon=141.90, lat=42.70, shape=(1160, 2250),
        elev_min=0.0, elev_max=600.0, valley_scale_px=90.0, rivers=4, bed_half_width_px=(12.0, 30.0),
        slide_fraction=0.165, slide_mean_px=96.0, slide_sigma=0.8, slide_min_px=2.0, elongation=(1.5, 3.0),
        runout_share=0.3, slope_pref_deg=14.0, elev_pref=(150.0, 450.0),
        soil=(0.095, 0.135, 0.160, 0.255), remnant=(0.0, 0.35), veg=(0.028, 0.058, 0.036, 0.300),
        haze=0.050, sun_elevation=48.0, sun_azimuth=160.0,
        description="Eastern Iburi, Hokkaido earthquake 2018: many small dense shallow slides on pumice-covered "
        "hills; farmland with bare fields and logged slopes (confounders)",
    ),
}
