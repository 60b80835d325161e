"""Read a site folder (the site contract, docs/data.md) into a Site: everything comes onto the grid of its image.

The image is ``s2.tif`` (Sentinel-2 B2, B3, B4, B8) or ``image.tif`` (any sensor, any pixel size and number of
bands, named by site.yaml ``bands``, its band descriptions or its colour interpretation; ``units`` in site.yaml
says whether they are reflectance or brightness). ``dem.tif`` may be a DEM or a DSM in any CRS and resolution.

Whole sites and the row strips of a scene (:class:`~slidemap.data.loading.scene.SceneStrips`) are read by one function,
:func:`read_inputs`, so a pixel gets the same inputs whichever way it is read. Bad input is an InputError naming
the file.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rasterio.windows import Window

from slidemap.data.sites.bands import (IMAGE_FILE, PRE_FILES, S2_FILE, ImageBands, band_name, image_band_indexes,
                                 s2_band_indexes)
from slidemap.data.sites.channels import OPTICAL_UNITS
from slidemap.data.sites.grid import Grid, disjoint, fmt_bounds
from slidemap.data.sites.labels import find_inventory, read_inventory, read_mask
from slidemap.data.sites.pre_event import check_coverage, read_pre_event
from slidemap.data.sites.raster import covering_window, open_raster, own_bounds, read_valid, reproject_onto
from slidemap.data.sites.reflectance import check_reflectance, to_reflectance
from slidemap.data.sites.site import Site
from slidemap.data.sites.terrain import horn_slope, pixel_size_m
from slidemap.errors import InputError

__all__ = ["SiteInputs", "band_name", "image_path", "list_sites", "load_meta", "masked_site", "open_dem",
           "read_dem", "read_image", "read_inputs", "read_site", "read_sites"]

log = logging.getLogger(__name__)

PathLikeStr = str | PathLike[str]


SITE_KEYS = ("bands", "units", "scale", "offset", "pre_scale", "pre_offset", "sensor", "split", "description",
             "provenance", "synthetic", "pre_event")
"""The keys of site.yaml (the site contract, docs/data.md; ``provenance``, ``synthetic`` and ``pre_event`` are
written by slidemap site and slidemap synth as records); any other is refused: a typo (``bandz:``) would be silently
ignored."""


def load_meta(folder: Path) -> dict[str, Any]:
    """``site.yaml`` as a dict ({} when absent); the keys read here are checked, ``split`` is checked by split.py."""
    path = folder / "site.yaml"
    if not path.exists():
        return {}
    try:
        meta = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(path, f"malformed YAML: {' '.join(str(err).split())[:200]}") from err
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from err
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise InputError(path, f"must be a mapping (bands, scale, offset, split, ...), got {type(meta).__name__}")
    unknown = [str(k) for k in meta if k not in SITE_KEYS]
    if unknown:
        near = difflib.get_close_matches(unknown[0], SITE_KEYS, n=1)
        raise InputError(path, f"unknown key {unknown[0]!r}{f' (did you mean {near[0]!r}?)' if near else ''}; "
                               f"site.yaml keys are {', '.join(SITE_KEYS)}")
    bands = meta.get("bands")
    if bands is not None and (not isinstance(bands, list) or not all(isinstance(b, str) for b in bands)):
        raise InputError(path, "'bands' must be a list of band names such as [B2, B3, B4, B8]")
    for key in ("scale", "offset", "pre_scale", "pre_offset"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InputError(path, f"'{key}' must be a number, got {value!r}")
    units = meta.get("units")
    if units is not None and units not in OPTICAL_UNITS:
        raise InputError(path, f"'units' must be one of {', '.join(OPTICAL_UNITS)} (what the image's band values "
                               f"are), got {units!r}")
    if units == "brightness" and (folder / S2_FILE).exists() and not (folder / IMAGE_FILE).exists():
        raise InputError(path, "'units: brightness' is for uncalibrated imagery in image.tif; s2.tif holds "
                               "Sentinel-2 reflectance")
    return meta


def image_path(folder: Path) -> Path:
    """The site's image: s2.tif (Sentinel-2) or image.tif (any sensor); one of them, not both."""
    s2, image = folder / S2_FILE, folder / IMAGE_FILE
    if s2.is_file() and image.is_file():
        raise InputError(folder, f"holds both {S2_FILE} and {IMAGE_FILE}: keep one ({S2_FILE} is Sentinel-2 B2, B3, "
                                 f"B4, B8; {IMAGE_FILE} any sensor's bands)")
    return image if image.is_file() else s2


def pre_path(folder: Path) -> Path:
    """The pre-event image that goes with the site's image (s2_pre.tif or image_pre.tif)."""
    return folder / PRE_FILES[image_path(folder).name]


def read_image(path: Path, meta: dict[str, Any],
               rows: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, Grid, ImageBands]:
    """Band values (C, H, W) float32 in the site's units (0 where invalid), valid mask, grid and band layout of
    s2.tif (its four bands) or image.tif (every named band).

    With ``rows`` (r0, r1) only those rows are read; the grid still describes the whole file.
    """
    if not path.is_file():
        raise InputError(path, f"missing: every site needs {S2_FILE} (Sentinel-2 bands B2, B3, B4, B8) or "
                               f"{IMAGE_FILE} (any sensor, bands named in site.yaml or the band descriptions)")
    unit = str(meta.get("units") or "reflectance")
    with open_raster(path) as src:
        if path.name == S2_FILE:
            if src.count < 4:
                raise InputError(path, f"has {src.count} band(s); need at least 4 (B2, B3, B4, B8)")
            held = s2_band_indexes(path, src, meta)
        else:
            held = image_band_indexes(path, src, meta)
        if src.dtypes[0] == "uint8" and unit == "reflectance" and meta.get("scale") is None:
            fix = ("set 'units: brightness' in site.yaml for uncalibrated imagery (values / 255), or the 'scale' that "
                   "makes them reflectance") if path.name == IMAGE_FILE else (
                "an 8-bit rendering of Sentinel-2 is no L2A product: build the site from the product (slidemap site), "
                "or give site.yaml the 'scale' that makes its values reflectance")
            raise InputError(path, f"8-bit values are no reflectance (x 10000 would need 16 bits): {fix}")
        window = None if rows is None else Window(0, rows[0], src.width, rows[1] - rows[0])
        dn, valid = read_valid(src, held.indexes, window)
        grid = Grid.of(src)
    values = to_reflectance(dn, valid, meta.get("scale"), meta.get("offset"), unit=unit, source=path)
    check_reflectance(values, valid, path, meta.get("scale"), unit)
    return values, valid, grid, held


@contextmanager
def open_dem(path: Path) -> Iterator[Any]:
    """dem.tif opened for reading; missing, unreadable or without CRS, it is an InputError."""
    if not path.is_file():
        raise InputError(path, "missing: every site needs dem.tif (elevation, any CRS and resolution)")
    with open_raster(path) as src:
        yield src


def read_dem(path: Path, grid: Grid, image: str = S2_FILE) -> np.ndarray:
    """dem.tif bilinearly resampled onto ``grid`` (that of the site's ``image``); NaN where the DEM is nodata or
    does not reach."""
    with open_dem(path) as src:
        footprint = grid.bounds_in(src.crs)
        own = own_bounds(src)
        if footprint is not None and disjoint(footprint, own):
            raise InputError(path, f"does not overlap {image}: DEM bounds {fmt_bounds(own, src.crs)} vs {image} bounds "
                                   f"{fmt_bounds(footprint, src.crs)} = {fmt_bounds(grid.bounds, grid.crs)}")
        window = covering_window(src, footprint)
        raw, valid = read_valid(src, [1], window)
        data = raw[0].astype(np.float32)
        data[~valid] = np.nan
        dem = np.full(grid.shape, np.nan, np.float32)
        reproject_onto(data, src, window, grid, dem)
    missing = float(np.isnan(dem).mean())
    if missing >= 1.0:
        raise InputError(path, f"has no elevation over {image} (bounds {fmt_bounds(grid.bounds, grid.crs)})")
    if missing > 0:
        log.warning("%s: no elevation for %.1f%% of the %s pixels (outside coverage or nodata); "
                    "they are marked invalid", path, 100 * missing, image)
    return dem


@dataclass(frozen=True)
class SiteInputs:
    """The inputs of some rows of a site on their grid; ``valid`` joins every input's, nothing is zeroed yet."""

    grid: Grid
    bands: np.ndarray
    valid: np.ndarray
    dem: np.ndarray
    slope: np.ndarray
    bands_pre: np.ndarray | None
    band_names: tuple[str, ...]


def read_inputs(folder: Path, meta: dict[str, Any], rows: tuple[int, int] | None = None,
                with_pre: bool | None = None) -> SiteInputs:
    """The image, its pre-event image and dem.tif (and its slope) of rows ``[r0, r1)`` of the image's grid, or
    of all of it.

    Only the windows under the rows are read (memory grows with the rows, never with the scene), the DEM one row
    beyond on each side so that slope at a strip's edge uses real neighbours.

    Args:
        folder: the site folder.
        meta: its ``site.yaml`` (:func:`load_meta`); a whole site records its pre-event coverage there.
        rows: (r0, r1), or None for the whole site.
        with_pre: read the pre-event image; None reads it whenever there is one. A whole site's coverage is
            checked here; a scene's strips rely on the check :class:`~slidemap.data.loading.scene.SceneStrips` made.
    """
    s2_path = image_path(folder)
    meta.setdefault("image", s2_path.name)
    bands, valid, full, held = read_image(s2_path, meta, rows)
    r0, r1 = rows or (0, full.shape[0])
    grid = full.rows(r0, r1)
    bands_pre, pre_valid = None, None
    pre = pre_path(folder)
    if pre.is_file() if with_pre is None else with_pre:
        bands_pre, pre_valid = read_pre_event(pre, meta, grid, held)
        if rows is None:
            meta["pre_event_coverage"] = check_coverage(pre, pre_valid, valid)
    h0, h1 = max(0, r0 - 1), min(full.shape[0], r1 + 1)  # one DEM row beyond the rows for Horn's 3x3 kernel
    halo = full.rows(h0, h1)
    dem_halo = read_dem(folder / "dem.tif", halo, s2_path.name)
    dx, dy = pixel_size_m(halo.crs, halo.transform, halo.shape, path=str(s2_path))
    inner = slice(r0 - h0, r1 - h0)
    slope = horn_slope(dem_halo, dx, dy)[inner]
    dem = dem_halo[inner]
    valid &= np.isfinite(dem) & np.isfinite(slope)
    if pre_valid is not None:  # one valid mask for every input set, so post and change models score the same pixels
        valid &= pre_valid
    return SiteInputs(grid, bands, valid, dem, slope, bands_pre, held.names)


def masked_site(name: str, inputs: SiteInputs, meta: dict[str, Any], label: np.ndarray | None = None,
                count: int | None = None) -> Site:
    """The Site of ``inputs``: every array 0 where a pixel is invalid, as the Site contract promises."""
    invalid = ~inputs.valid
    for array in (inputs.bands, inputs.bands_pre):
        if array is not None:
            array[:, invalid] = 0.0
    inputs.dem[invalid] = 0.0
    inputs.slope[invalid] = 0.0
    if label is not None:
        label[invalid] = 0
    return Site(name=name, bands=inputs.bands, dem=inputs.dem, slope=inputs.slope, label=label, valid=inputs.valid,
                transform=inputs.grid.transform, crs=inputs.grid.crs, landslide_count=count, meta=meta,
                bands_pre=inputs.bands_pre, band_names=inputs.band_names)


def read_site(folder: PathLikeStr, require_label: bool = True) -> Site:
    """Read one site folder onto its s2 grid.

    An optional pre-event image ``s2_pre.tif`` (same bands, any grid) comes onto the s2 grid too
    (:mod:`slidemap.data.sites.pre_event`); its no-data joins the valid mask.

    Args:
        folder: the site folder (its name is the site name).
        require_label: demand ``inventory.*`` or ``mask.tif``; False for scenes that are only mapped.

    Raises:
        InputError: any missing, unreadable or inconsistent input, naming the file and the problem.
    """
    start = time.perf_counter()
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "site folder not found")
    meta = load_meta(folder)
    meta["path"] = str(folder)
    inventory, mask_path = find_inventory(folder), folder / "mask.tif"
    if inventory is None and not mask_path.exists() and require_label:  # fail before the slow reads
        raise InputError(folder, "no inventory.* or mask.tif: the site has no landslide labels")
    inputs = read_inputs(folder, meta)
    valid = inputs.valid

    label: np.ndarray | None = None
    count: int | None = None
    if inventory is not None:
        if mask_path.exists():
            log.warning("%s: both %s and mask.tif present; using %s", folder, inventory.name, inventory.name)
        label, count = read_inventory(inventory, inputs.grid, meta)
        meta["label_source"] = inventory.name
    elif mask_path.exists():
        label, mask_valid, count = read_mask(mask_path, inputs.grid)
        valid &= mask_valid
        meta["label_source"] = mask_path.name

    if not valid.any():
        raise InputError(folder, "no pixel is valid in every input (image nodata, dem.tif coverage, mask nodata)")
    site = masked_site(folder.name, inputs, meta, label, count)
    log.info("read site %s (%d x %d px, %.1f%% valid) in %.2f s", site.name, *site.shape,
             100 * float(valid.mean()), time.perf_counter() - start)
    return site


def list_sites(root: PathLikeStr) -> list[str]:
    """Sorted names of the subfolders of ``root`` that hold an image (``s2.tif`` or ``image.tif``)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "sites folder not found")
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and ((p / S2_FILE).is_file() or (p / IMAGE_FILE).is_file()))


def read_sites(root: PathLikeStr, names: Sequence[str] | None = None, require_label: bool = True) -> dict[str, Site]:
    """Read several sites under ``root`` (all when ``names`` is None), keyed by name in the order asked."""
    known = list_sites(root)
    if not known:
        raise InputError(root, f"no sites: no subfolder holds an {S2_FILE} or {IMAGE_FILE}")
    wanted = list(known if names is None else names)
    for name in wanted:
        if name not in known:
            raise InputError(root, f"unknown site '{name}'; known sites: {', '.join(known)}")
    return {name: read_site(Path(root) / name, require_label=require_label) for name in wanted}
