"""Write the files of a site folder (the site contract, docs/data.md): s2.tif, dem.tif, the inventory and site.yaml."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from rasterio.enums import ColorInterp

from slidemap.data.sites.grid import Grid
from slidemap.data.sites.labels import INVENTORY_SUFFIXES
from slidemap.data.sites.site import BAND_NAMES
from slidemap.errors import InputError
from slidemap.styles import colour_interpretation, write_raster_style

COG_OPTIONS = {"compress": "deflate", "predictor": 3, "blocksize": 512, "overview_resampling": "average",
               "num_threads": "all_cpus", "bigtiff": "if_safer"}
"""Cloud-optimised GeoTIFF: 512 px tiles, deflate with the floating-point predictor, averaged overviews."""

_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")


def write_float_cog(path: Path, data: np.ndarray, grid: Grid, descriptions: tuple[str, ...] = (),
                    colours: Sequence[ColorInterp] = ()) -> Path:
    """A float32 COG (NaN = nodata) from a (H, W) or (C, H, W) array on ``grid``.

    ``colours`` (GDAL colour interpretation per band) is set while the file is made: changing it afterwards
    would rewrite the header and break the COG layout.
    """
    arr = data[None] if data.ndim == 2 else data
    profile = {"driver": "COG", "count": arr.shape[0], "height": arr.shape[1], "width": arr.shape[2],
               "dtype": "float32", "crs": grid.crs, "transform": grid.transform, "nodata": float("nan"),
               **COG_OPTIONS}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr.astype(np.float32, copy=False))
        for i, text in enumerate(descriptions, start=1):
            dst.set_band_description(i, text)
        if colours:
            dst.colorinterp = list(colours)
    return path


def write_s2(path: Path, bands: np.ndarray, grid: Grid) -> Path:
    """s2.tif: B2, B3, B4, B8 surface reflectance, float32, NaN where no-data or cloud-masked.

    The bands carry their colour interpretation (blue, green, red, undefined), and a ``.qml`` sidecar draws the
    image in true colour in QGIS.
    """
    write_float_cog(path, bands, grid, BAND_NAMES, colour_interpretation(BAND_NAMES))
    write_raster_style(path, "s2")
    return path


def check_inventory(path: Path) -> Path:
    """An inventory the site reader accepts by its suffix (GeoJSON, Shapefile, GeoPackage)."""
    if not path.is_file():
        raise InputError(path, "not found")
    if path.suffix.lower() not in INVENTORY_SUFFIXES:
        raise InputError(path, f"inventory must be one of {', '.join(INVENTORY_SUFFIXES)}")
    return path


def copy_inventory(src: Path, folder: Path) -> Path:
    """Copy the inventory as ``inventory.<ext>``; a Shapefile brings its side files (.shx, .dbf, .prj, ...)."""
    suffix = src.suffix.lower()
    if suffix == ".shp":
        for part in _SHAPEFILE_PARTS:
            for side in (src.with_suffix(part), src.with_suffix(part.upper())):
                if side.is_file():
                    shutil.copyfile(side, folder / f"inventory{part}")
                    break
    else:
        shutil.copyfile(src, folder / f"inventory{suffix}")
    return folder / f"inventory{suffix}"


def plain(value: Any) -> Any:
    """Builtin types only (numpy scalars, tuples, paths), so YAML and JSON write it as written."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_site_yaml(path: Path, description: str, provenance: dict[str, Any]) -> Path:
    """site.yaml: band order and scale for the reader (reflectance already), and the full provenance."""
    meta = {"description": description, "bands": list(BAND_NAMES), "scale": 1.0, "provenance": plain(provenance)}
    path.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return path
