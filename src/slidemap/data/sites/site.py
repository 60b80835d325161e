"""The in-memory Site: one co-registered stack of named bands, terrain and labels on the grid of its image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from slidemap.data.sites.channels import (NDVI_BANDS, PAPER_BANDS, PRE_DERIVED, PRE_SUFFIX, TERRAIN, bands_needed,
                                    canonical, is_pre)
from slidemap.data.sites.indices import dndvi, ndvi, rdndvi
from slidemap.errors import InputError

BAND_NAMES: tuple[str, ...] = ("B2", "B3", "B4", "B8")
"""The Sentinel-2 band ids of the paper's bands (blue, green, red, nir): what ingest reads from products."""

DEFAULT_CHANNELS: tuple[str, ...] = PAPER_BANDS + ("slope",)
"""The paper's inputs: Sentinel-2 B2, B3, B4, B8 (blue, green, red, nir) and slope."""


@dataclass(frozen=True, eq=False)
class Site:
    """A study site on the grid of its image (s2.tif, or image.tif of any sensor).

    Attributes:
        name: Site name (the folder name, e.g. ``taiwan``).
        bands: float32 (C, H, W) band values named by ``band_names`` (surface reflectance, or brightness 0-1 where
            site.yaml says ``units: brightness``); 0 where ``valid`` is False.
        dem: float32 (H, W) elevation in metres, bilinearly resampled onto the s2 grid.
        slope: float32 (H, W) slope in degrees (Horn's method, true pixel size in metres).
        label: uint8 (H, W) 0/1 landslide mask, or None for a scene without inventory.
        valid: bool (H, W); False where any input is nodata. Excluded from loss and metrics.
        transform: Affine transform of the s2 grid.
        crs: CRS of the s2 grid.
        landslide_count: Number of inventory features (or connected mask components); None without labels.
        meta: Contents of ``site.yaml`` plus provenance notes (e.g. repaired polygons).
        bands_pre: float32 (C, H, W), the same bands of the pre-event image (``s2_pre.tif``/``image_pre.tif``)
            on the site's grid, 0 where ``valid`` is False; None for a single-date site.
        band_names: The common name of each band (:mod:`slidemap.data.sites.channels`), in ``bands`` order.
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
    band_names: tuple[str, ...] = PAPER_BANDS

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.valid.shape[0]), int(self.valid.shape[1]))

    @property
    def pixel_size_m(self) -> float:
        """Pixel width in CRS units (metres for the projected CRSs sites use)."""
        return float(abs(self.transform.a))

    @property
    def optical_unit(self) -> str:
        """What the band values are: 'reflectance' (the default) or 'brightness' (site.yaml ``units``)."""
        return str(self.meta.get("units") or "reflectance")

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel this site can give: its bands, terrain, NDVI where red and nir are, pre-event ones."""
        names = self.band_names + TERRAIN
        if all(b in self.band_names for b in NDVI_BANDS):
            names += ("ndvi",)
        if self.bands_pre is not None:
            names += tuple(b + PRE_SUFFIX for b in self.band_names)
            names += PRE_DERIVED if "ndvi" in names else ()
        return names

    def check_channels(self, names: tuple[str, ...] | list[str]) -> None:
        """One line naming the site and the first channel it cannot give, before anything is computed."""
        for name in names:
            c = canonical(name)
            if c in self.channels:
                continue
            if is_pre(c) and self.bands_pre is None:
                self._pre(name)
            lacking = [b for b in bands_needed(c) if b not in self.band_names]
            needs = "" if lacking == [c] else f" (channel {name} needs {', '.join(lacking)})"
            raise InputError(self.meta.get("path", self.name),
                             f"site '{self.name}' has no {' or '.join(lacking)} band{needs}; its bands: "
                             f"{', '.join(self.band_names)}")

    def channel(self, name: str) -> np.ndarray:
        """One named input channel as float32 (H, W); invalid pixels are 0.

        Raises:
            KeyError: ``name`` is no channel. InputError: the site lacks a band (or the pre-event image) it needs.
        """
        try:
            c = canonical(name)
        except ValueError as err:
            raise KeyError(str(err)) from None
        if c in self.band_names:
            return self.bands[self.band_names.index(c)]
        if c == "slope":
            return self.slope
        if c == "dem":
            return self.dem
        self.check_channels([name])
        red, nir = (self.band_names.index(b) for b in NDVI_BANDS)
        if c == "ndvi":
            return self._masked(ndvi(self.bands[red], self.bands[nir]))
        pre = self._pre(name)
        if c.endswith(PRE_SUFFIX) and c != "ndvi_pre":
            return pre[self.band_names.index(c.removesuffix(PRE_SUFFIX))]
        ndvi_pre = ndvi(pre[red], pre[nir])
        if c == "ndvi_pre":
            return self._masked(ndvi_pre)
        change = dndvi if c == "dndvi" else rdndvi
        return self._masked(change(ndvi(self.bands[red], self.bands[nir]), ndvi_pre))

    def _masked(self, values: np.ndarray) -> np.ndarray:
        """Derived values as float32 with invalid pixels 0, as every stored channel has them."""
        return np.where(self.valid, values, 0.0).astype(np.float32)

    def _pre(self, channel: str) -> np.ndarray:
        """The pre-event bands, or a one-line error naming the site when it has no ``s2_pre.tif``."""
        if self.bands_pre is None:
            where = self.meta.get("path", self.name)
            raise InputError(where, f"site '{self.name}' has no pre-event image (s2_pre.tif) but channel {channel} "
                                    "needs one: add s2_pre.tif (slidemap site --s2-pre PRODUCT...) or image_pre.tif, "
                                    "or use inputs=post")
        return self.bands_pre

    def stack(self, names: tuple[str, ...] | list[str] = DEFAULT_CHANNELS) -> np.ndarray:
        """The input stack (C, H, W) float32 in the given channel order."""
        return np.stack([self.channel(n) for n in names]).astype(np.float32, copy=False)
