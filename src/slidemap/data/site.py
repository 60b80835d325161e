"""The in-memory Site: one co-registered stack of Sentinel-2 bands, terrain and labels on the s2 grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

BAND_NAMES: tuple[str, ...] = ("B2", "B3", "B4", "B8")
"""The Sentinel-2 10 m bands of the paper, in the order they are stored in ``Site.bands``."""

CHANNELS: tuple[str, ...] = BAND_NAMES + ("slope", "dem", "ndvi")
"""Every input channel a model can ask for; ``DEFAULT_CHANNELS`` is the paper's choice."""

DEFAULT_CHANNELS: tuple[str, ...] = ("B2", "B3", "B4", "B8", "slope")


@dataclass(frozen=True, eq=False)
class Site:
    """A study site on the Sentinel-2 grid.

    Attributes:
        name: Site name (the folder name, e.g. ``taiwan``).
        bands: float32 (4, H, W) surface reflectance B2, B3, B4, B8; 0 where ``valid`` is False.
        dem: float32 (H, W) elevation in metres, bilinearly resampled onto the s2 grid.
        slope: float32 (H, W) slope in degrees (Horn's method, true pixel size in metres).
        label: uint8 (H, W) 0/1 landslide mask, or None for a scene without inventory.
        valid: bool (H, W); False where any input is nodata. Excluded from loss and metrics.
        transform: Affine transform of the s2 grid.
        crs: CRS of the s2 grid.
        landslide_count: Number of inventory features (or connected mask components); None without labels.
        meta: Contents of ``site.yaml`` plus provenance notes (e.g. repaired polygons).
    """

    name: str
    bands: np.ndarray
    dem: np.ndarray
    slope: np.ndarray
    label: np.ndarray | None
    valid: np.ndarray
    transform: Affine
    crs: CRS
    landslide_count: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.valid.shape[0]), int(self.valid.shape[1]))

    @property
    def pixel_size_m(self) -> float:
        """Pixel width in CRS units (metres for the projected CRSs sites use)."""
        return float(abs(self.transform.a))

    def channel(self, name: str) -> np.ndarray:
        """One named input channel as float32 (H, W); invalid pixels are 0."""
        if name in BAND_NAMES:
            return self.bands[BAND_NAMES.index(name)]
        if name == "slope":
            return self.slope
        if name == "dem":
            return self.dem
        if name == "ndvi":
            red, nir = self.bands[2], self.bands[3]
            denom = nir + red
            ndvi = np.divide(nir - red, denom, out=np.zeros_like(denom), where=np.abs(denom) > 1e-6)
            return np.where(self.valid, ndvi, 0.0).astype(np.float32)
        raise KeyError(f"unknown channel {name!r}; known channels: {', '.join(CHANNELS)}")

    def stack(self, names: tuple[str, ...] | list[str] = DEFAULT_CHANNELS) -> np.ndarray:
        """The input stack (C, H, W) float32 in the given channel order."""
        return np.stack([self.channel(n) for n in names]).astype(np.float32, copy=False)
