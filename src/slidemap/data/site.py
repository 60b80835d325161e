"""The in-memory Site: one co-registered stack of Sentinel-2 bands, terrain and labels on the s2 grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from slidemap.data.indices import dndvi, ndvi, rdndvi
from slidemap.errors import InputError

BAND_NAMES: tuple[str, ...] = ("B2", "B3", "B4", "B8")
"""The Sentinel-2 10 m bands of the paper, in the order they are stored in ``Site.bands``."""

PRE_BAND_NAMES: tuple[str, ...] = tuple(f"{b}_pre" for b in BAND_NAMES)
"""The same bands of the pre-event image (``s2_pre.tif``), stored in ``Site.bands_pre``."""

PRE_CHANNELS: tuple[str, ...] = PRE_BAND_NAMES + ("ndvi_pre", "dndvi", "rdndvi")
"""Channels that need a pre-event image: its bands, its NDVI, and the NDVI change (post - pre, HazMapper's rdNDVI)."""

CHANNELS: tuple[str, ...] = BAND_NAMES + ("slope", "dem", "ndvi") + PRE_CHANNELS
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
        bands_pre: float32 (4, H, W) reflectance B2, B3, B4, B8 of the pre-event image (``s2_pre.tif``) on the
            s2 grid, 0 where ``valid`` is False; None for a single-date site.
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
    bands_pre: np.ndarray | None = None

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
            return self._masked(ndvi(self.bands[2], self.bands[3]))
        if name not in PRE_CHANNELS:
            raise KeyError(f"unknown channel {name!r}; known channels: {', '.join(CHANNELS)}")
        pre = self._pre(name)
        if name in PRE_BAND_NAMES:
            return pre[PRE_BAND_NAMES.index(name)]
        ndvi_pre = ndvi(pre[2], pre[3])
        if name == "ndvi_pre":
            return self._masked(ndvi_pre)
        change = dndvi if name == "dndvi" else rdndvi
        return self._masked(change(ndvi(self.bands[2], self.bands[3]), ndvi_pre))

    def _masked(self, values: np.ndarray) -> np.ndarray:
        """Derived values as float32 with invalid pixels 0, as every stored channel has them."""
        return np.where(self.valid, values, 0.0).astype(np.float32)

    def _pre(self, channel: str) -> np.ndarray:
        """The pre-event bands, or a one-line error naming the site when it has no ``s2_pre.tif``."""
        if self.bands_pre is None:
            where = self.meta.get("path", self.name)
            raise InputError(where, f"site '{self.name}' has no pre-event image (s2_pre.tif) but channel {channel} "
                                    "needs one: add s2_pre.tif (slidemap site --s2-pre PRODUCT...) or use inputs=post")
        return self.bands_pre

    def stack(self, names: tuple[str, ...] | list[str] = DEFAULT_CHANNELS) -> np.ndarray:
        """The input stack (C, H, W) float32 in the given channel order."""
        return np.stack([self.channel(n) for n in names]).astype(np.float32, copy=False)
