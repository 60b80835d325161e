"""A scene read by row strips: its image (s2.tif or image.tif) and dem.tif come onto its grid a strip at a time.

A whole Sentinel-2 tile (10980 x 10980 px) holds 1.9 GB of float32 reflectance alone; mapping it must not
hold it all. :class:`SceneStrips` reads the rows a mosaic asks for through the function that reads whole sites
(:func:`~slidemap.data.sites.reader.read_inputs`, given the rows), so a strip holds what
:func:`~slidemap.data.sites.reader.read_site` gives for those rows (same reflectance, DEM resampling, Horn slope, valid
mask). A pre-event image ``s2_pre.tif`` is read the same way, by the window under each strip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from slidemap.data.sites.bands import pre_band_indexes
from slidemap.data.sites.channels import canonical, is_pre
from slidemap.data.sites.pre_event import MIN_COVERAGE, extent_share
from slidemap.data.sites.raster import reading
from slidemap.data.sites.reader import image_path, load_meta, masked_site, open_dem, pre_path, read_image, read_inputs
from slidemap.data.sites.site import Site
from slidemap.data.tiling.patches import Normaliser
from slidemap.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_STRIP_ROWS = 512
EMPTY_CHECK_SIDE = 1024
"""Longest side at which :meth:`SceneStrips.empty_inputs` reads each band to find one without any valid pixel."""


class SceneStrips:
    """Row strips of a site folder (``s2.tif`` or ``image.tif`` + ``dem.tif``; labels are not read) on the image grid.

    Args:
        folder: The scene's site folder.
        strip_rows: Rows read at once; memory grows with ``strip_rows x width``, never with the scene height.
        channels: The channels a model will read. None reads ``s2_pre.tif`` whenever there is one (as
            :func:`~slidemap.data.sites.reader.read_site`); given, it is read only when a channel needs it (so its clouds
            do not punch holes in a single-date map), and its absence then is an error.
    """

    def __init__(self, folder: str | PathLike[str], strip_rows: int = DEFAULT_STRIP_ROWS, *,
                 channels: Sequence[str] | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(self.folder, "scene folder not found")
        self.meta = {**load_meta(self.folder), "path": str(self.folder)}
        self.s2_path, self.dem_path = image_path(self.folder), self.folder / "dem.tif"
        _, _, self.grid, self.s2_bands = read_image(self.s2_path, self.meta, rows=(0, 1))  # checks bands and CRS
        with open_dem(self.dem_path):  # missing or without CRS: refused before any strip
            pass
        self.pre_path = pre_path(self.folder)
        self.with_pre = self._check_pre(channels)
        self.strip_rows = max(1, int(strip_rows))
        self._strip: tuple[int, Site] | None = None

    def _check_pre(self, channels: Sequence[str] | None) -> bool:
        """Whether strips read s2_pre.tif; its header, bands and extent are checked here, before any strip."""
        needed = [c for c in channels or () if is_pre(canonical(c))]
        if not self.pre_path.is_file():
            if needed:
                raise InputError(self.pre_path, f"missing: scene '{self.name}' has no pre-event image but channels "
                                                f"{', '.join(needed)} need one; add s2_pre.tif (slidemap site "
                                                "--s2-pre PRODUCT...) or map with --s2-pre PRODUCT...")
            return False
        if channels is not None and not needed:
            return False
        with reading(self.pre_path), rasterio.open(self.pre_path) as src:
            pre_band_indexes(self.pre_path, src, self.s2_bands)
        share = extent_share(self.pre_path, self.grid)
        if share < MIN_COVERAGE:
            raise InputError(self.pre_path, f"covers only {share:.1%} of the scene's extent; need at least "
                                            f"{MIN_COVERAGE:.0%}: use a pre-event image over the whole scene")
        return True

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape

    @property
    def transform(self) -> Any:
        return self.grid.transform

    @property
    def crs(self) -> Any:
        return self.grid.crs

    def read(self, r0: int, r1: int) -> Site:
        """Rows ``[r0, r1)`` as a Site (no labels) whose transform places them in the scene."""
        height = self.shape[0]
        if not 0 <= r0 < r1 <= height:
            raise ValueError(f"rows [{r0}, {r1}) outside the scene's {height} rows")
        inputs = read_inputs(self.folder, self.meta, rows=(r0, r1), with_pre=self.with_pre)
        return masked_site(self.name, inputs, self.meta)

    def _covering(self, r0: int, r1: int) -> tuple[int, Site]:
        """The cached strip holding rows ``[r0, r1)``; a new one (from ``r0``) when it does not."""
        if self._strip is not None:
            start, site = self._strip
            if start <= r0 and r1 <= start + site.shape[0]:
                return self._strip
        end = min(self.shape[0], max(r1, r0 + self.strip_rows))
        self._strip = (r0, self.read(r0, end))
        return self._strip

    def empty_inputs(self, side: int = EMPTY_CHECK_SIDE) -> list[str]:
        """The files and bands without a single valid pixel (nodata or NaN everywhere), named for an error; read
        decimated to at most ``side`` px (a band empty at every decimation is empty)."""
        bands = dict(zip(self.s2_bands.indexes, self.s2_bands.names))
        files = [(self.s2_path, bands), (self.dem_path, {1: "elevation: slope and dem"})]
        if self.with_pre:
            files.append((self.pre_path, {i: f"{n} pre-event" for i, n in bands.items()}))
        empty = []
        for path, names in files:
            with reading(path), rasterio.open(path) as src:
                scale = max(1, -(-max(src.height, src.width) // side))
                shape = (max(1, src.height // scale), max(1, src.width // scale))
                for i, name in names.items():
                    if i > src.count:
                        continue
                    values = src.read(i, out_shape=shape, masked=True).astype(np.float64)
                    if not np.any(~np.ma.getmaskarray(values) & np.isfinite(values.filled(np.nan))):
                        empty.append(f"{path.name} band {i} ({name})")
        return empty

    def row_reader(self, normaliser: Normaliser):
        """A mosaic row reader (:data:`slidemap.mapping.mosaic.RowReader`) of the normalised channels."""
        channels = tuple(normaliser.channels)

        def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
            start, site = self._covering(r0, r1)
            rows = slice(r0 - start, r1 - start)
            valid = site.valid[rows]
            stack = np.stack([site.channel(c)[rows] for c in channels])
            return normaliser(stack, valid), valid

        return read
