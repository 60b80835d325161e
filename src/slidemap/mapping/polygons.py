"""Binary landslide map -> polygons (GeoPackage, area in m2 each).

A predicted landslide is a 4-connected region of landslide pixels (what GDAL's polygonize draws as one
polygon); an inventory landslide is an 8-connected component of the rasterised label (how the site reader
counts the landslides of a ``mask.tif``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import shapely
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage

from slidemap.data.sites.terrain import pixel_size_m
from slidemap.io import atomic_path
from slidemap.styles import write_gpkg_style

logging.getLogger("pyogrio._io").setLevel(logging.WARNING)  # one "Created N records" line per file is noise

LAYER = "landslides"
PREDICTED_CONNECTIVITY = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)  # 4-connectivity, as rasterio's shapes
INVENTORY_CONNECTIVITY = np.ones((3, 3), bool)  # 8-connectivity, as the reader counts mask landslides


@dataclass(frozen=True)
class Landslides:
    """Predicted landslide polygons of one map, one row per polygon (``id`` counts from 1)."""

    geometry: np.ndarray  # shapely Polygons in the map's CRS
    pixels: np.ndarray  # int64
    area_m2: np.ndarray  # float64
    mean_probability: np.ndarray | None = None  # float64
    hits_inventory: np.ndarray | None = None  # bool: overlaps a labelled pixel
    mean_uncertainty: np.ndarray | None = None  # float64: mean standard deviation of the probability

    def __len__(self) -> int:
        return int(self.geometry.size)


def predicted_mask(binary: np.ndarray) -> np.ndarray:
    """Landslide pixels of a binary map (1; the nodata value 255 and 0 are not)."""
    return np.asarray(binary) == 1


def region_areas(labels: np.ndarray, n: int, transform: Affine, crs: Any) -> np.ndarray:
    """Area in m2 of each labelled region 1..n, from the true pixel size (projected or geographic CRS)."""
    dx, dy = pixel_size_m(crs, transform, labels.shape)
    if np.ndim(dx) == 0 and np.ndim(dy) == 0:
        out = np.bincount(labels.ravel(), minlength=n + 1) * float(dx) * float(dy)
    else:
        row_area = np.broadcast_to(np.asarray(dx) * np.asarray(dy), (labels.shape[0],))
        out = np.zeros(n + 1)
        for r in range(labels.shape[0]):  # geographic grids: the pixel area changes with latitude
            out += np.bincount(labels[r], minlength=n + 1) * row_area[r]
    return out[1:]


def region_means(regions: np.ndarray, n: int, values: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over each labelled region 1..n (NaN counted as 0; regions hold valid pixels only)."""
    sums = np.bincount(regions.ravel(), weights=np.nan_to_num(values).ravel(), minlength=n + 1)[1:]
    return sums / np.maximum(pixels, 1)


def vectorise(binary: np.ndarray, transform: Affine, crs: Any, probability: np.ndarray | None = None,
              label: np.ndarray | None = None, uncertainty: np.ndarray | None = None) -> Landslides:
    """Polygons of the landslide pixels of ``binary`` on its grid, with pixel count, area and optional scores.

    Args:
        binary: uint8 (H, W) map: 1 landslide, 0 none, 255 nodata.
        transform, crs: the map's grid.
        probability: optional (H, W) probabilities; gives each polygon's mean probability.
        label: optional 0/1 inventory (H, W); flags polygons that overlap it.
        uncertainty: optional (H, W) standard deviations of the probability; gives each polygon's mean.
    """
    regions, n = ndimage.label(predicted_mask(binary), structure=PREDICTED_CONNECTIVITY)
    regions = regions.astype(np.int32, copy=False)
    geoms = np.empty(n, dtype=object)
    for geom, value in shapes(regions, mask=regions > 0, connectivity=4, transform=transform):
        geoms[int(value) - 1] = shapely.geometry.shape(geom)
    pixels = np.bincount(regions.ravel(), minlength=n + 1)[1:].astype(np.int64)
    mean_p = region_means(regions, n, probability, pixels) if probability is not None else None
    mean_sd = region_means(regions, n, uncertainty, pixels) if uncertainty is not None else None
    hits = None
    if label is not None:
        hits = np.bincount(regions[np.asarray(label) == 1], minlength=n + 1)[1:] > 0
    return Landslides(geoms, pixels, region_areas(regions, n, transform, crs), mean_p, hits, mean_sd)


def write_gpkg(path: str | PathLike[str], landslides: Landslides, crs: Any) -> Path:
    """Write the polygons as a GeoPackage layer ``landslides`` (id, pixels, area_m2, mean_probability,
    mean_uncertainty, hits_inventory where known), atomically."""
    path = Path(path)
    fields = ["id", "pixels", "area_m2"]
    data = [np.arange(1, len(landslides) + 1, dtype=np.int64), landslides.pixels, landslides.area_m2]
    if landslides.mean_probability is not None:
        fields.append("mean_probability")
        data.append(np.round(landslides.mean_probability, 4))
    if landslides.mean_uncertainty is not None:
        fields.append("mean_uncertainty")
        data.append(np.round(landslides.mean_uncertainty, 4))
    if landslides.hits_inventory is not None:
        fields.append("hits_inventory")
        data.append(landslides.hits_inventory.astype(np.int32))
    wkb = np.array(shapely.to_wkb(landslides.geometry) if len(landslides) else [], dtype=object)
    with atomic_path(path) as tmp:
        tmp.unlink()  # GDAL creates the GeoPackage itself
        pyogrio.raw.write(tmp, wkb, data, fields, driver="GPKG", layer=LAYER, geometry_type="Polygon",
                          crs=crs.to_wkt() if hasattr(crs, "to_wkt") else str(crs))
    write_gpkg_style(path, LAYER, "polygons")  # QGIS's default style inside the GeoPackage + a .qml sidecar
    return path
