"""Landslide polygons of a written binary map too large to hold: labels by strips, GDAL polygonize, batched writes.

A whole Sentinel-2 tile can hold a million predicted regions; their geometries alone outgrow the memory a map may
use. So nothing scene-sized is kept:

1. strips of the binary GeoTIFF are labelled (4-connected, as :func:`~slidemap.mapping.polygons.vectorise`)
   into a temporary label raster; pixels, area and probability sums are kept per provisional label (numbers, not
   geometries), and labels that touch across a strip border are recorded as pairs;
2. the pairs join provisional labels into landslides (a sparse graph's connected components), and the label
   raster is rewritten with final ids;
3. GDAL polygonizes the label raster row by row; polygons go to the GeoPackage in batches.
"""

from __future__ import annotations

import tempfile
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import rasterio
import rasterio.windows
import shapely
from rasterio.features import shapes
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from slidemap.mapping.polygons import LAYER, PREDICTED_CONNECTIVITY, region_areas
from slidemap.io import atomic_path
from slidemap.styles import write_gpkg_style

BATCH = 20_000


def _label_strips(binary_path: Path, value_paths: list[Path], labels_path: Path,
                  strip_rows: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray, Any]:
    """Pass 1: provisional labels into ``labels_path``; per-label pixels, area, sums of each value raster
    (probability, uncertainty); border pairs."""
    pixels, area, pairs = [np.zeros(1, np.int64)], [np.zeros(1)], []
    sums: list[list[np.ndarray]] = [[np.zeros(1)] for _ in value_paths]
    next_id = 0
    previous_row: np.ndarray | None = None
    with rasterio.open(binary_path) as src:
        profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="int32", crs=src.crs,
                       transform=src.transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                       BIGTIFF="IF_SAFER")
        value_srcs: list[Any] = []
        try:
            for p in value_paths:
                value_srcs.append(rasterio.open(p))
            with rasterio.open(labels_path, "w", **profile) as dst:
                for r0 in range(0, src.height, strip_rows):
                    window = Window(0, r0, src.width, min(strip_rows, src.height - r0))
                    labels, n = ndimage.label(src.read(1, window=window) == 1, structure=PREDICTED_CONNECTIVITY)
                    labels = labels.astype(np.int32, copy=False)
                    labels[labels > 0] += next_id
                    strip_transform = rasterio.windows.transform(window, src.transform)
                    local = np.where(labels > 0, labels - next_id, 0)
                    pixels.append(np.bincount(local.ravel(), minlength=n + 1)[1:])
                    area.append(region_areas(local, n, strip_transform, src.crs))
                    for value_src, value_sums in zip(value_srcs, sums):
                        values = np.nan_to_num(value_src.read(1, window=window))
                        value_sums.append(np.bincount(local.ravel(), weights=values.ravel(), minlength=n + 1)[1:])
                    if previous_row is not None:  # 4-connectivity across the border: the pixel straight above
                        touch = (previous_row > 0) & (labels[0] > 0)
                        pairs.append(np.stack([previous_row[touch], labels[0][touch]]))
                    previous_row = labels[-1].copy()
                    dst.write(labels, 1, window=window)
                    next_id += n
        finally:
            for value_src in value_srcs:
                value_src.close()
        crs = src.crs
    edges = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)
    return np.concatenate(pixels), np.concatenate(area), [np.concatenate(v) for v in sums], edges, crs


def _final_ids(n: int, edges: np.ndarray) -> np.ndarray:
    """Map provisional label (0..n) -> landslide id (1..m, 0 stays background), joining labels across borders."""
    graph = coo_matrix((np.ones(edges.shape[1], bool), (edges[0], edges[1])), shape=(n + 1, n + 1))
    _, component = connected_components(graph, directed=False)
    # renumber components 1..m in order of their first provisional label (raster order), background 0
    order = np.unique(component[1:], return_index=True)
    rank = np.empty(component.max() + 1, np.int64)
    rank[order[0]] = np.argsort(np.argsort(order[1])) + 1
    ids = rank[component]
    ids[0] = 0
    return ids.astype(np.int32)


def _relabel(labels_path: Path, mask_path: Path, ids: np.ndarray, strip_rows: int) -> None:
    """Pass 2: rewrite the label raster with final landslide ids, and write the uint8 mask GDAL polygonizes by."""
    with rasterio.open(labels_path, "r+") as dst:
        profile = {**dst.profile, "dtype": "uint8"}
        with rasterio.open(mask_path, "w", **profile) as mask:
            for r0 in range(0, dst.height, strip_rows):
                window = Window(0, r0, dst.width, min(strip_rows, dst.height - r0))
                final = ids[dst.read(1, window=window)]
                dst.write(final, 1, window=window)
                mask.write((final > 0).astype(np.uint8), 1, window=window)


def write_polygons_streamed(binary_path: str | PathLike[str], gpkg_path: str | PathLike[str],
                            probability_path: str | PathLike[str] | None = None,
                            strip_rows: int = 512,
                            uncertainty_path: str | PathLike[str] | None = None) -> tuple[int, float]:
    """Write the landslide polygons of a binary GeoTIFF (1 = landslide) to a GeoPackage, atomically.

    Fields as :func:`~slidemap.mapping.polygons.write_gpkg`: id, pixels, area_m2 (true pixel areas),
    mean_probability when ``probability_path`` is given and mean_uncertainty when ``uncertainty_path`` is.
    Returns (polygons, total area in m2).
    """
    gpkg_path = Path(gpkg_path)
    with tempfile.TemporaryDirectory(prefix=".polygons-", dir=gpkg_path.parent) as tmp:
        labels_path = Path(tmp) / "labels.tif"
        named = {k: Path(p) for k, p in (("mean_probability", probability_path),
                                         ("mean_uncertainty", uncertainty_path)) if p is not None}
        pixels, area, sums, edges, crs = _label_strips(Path(binary_path), list(named.values()), labels_path,
                                                       strip_rows)
        n = len(pixels) - 1
        ids = _final_ids(n, edges)
        m = int(ids.max()) if n else 0
        total_pixels = np.bincount(ids, weights=pixels, minlength=m + 1)
        total_area = np.bincount(ids, weights=area, minlength=m + 1)
        means = {k: np.bincount(ids, weights=v, minlength=m + 1) / np.maximum(total_pixels, 1)
                 for k, v in zip(named, sums)}
        mask_path = Path(tmp) / "mask.tif"
        _relabel(labels_path, mask_path, ids, strip_rows)
        fields = ["id", "pixels", "area_m2", *means]
        with atomic_path(gpkg_path) as out, rasterio.open(labels_path) as src, rasterio.open(mask_path) as msk:
            out.unlink()  # GDAL creates the GeoPackage itself
            band = rasterio.band(src, 1)
            batch_geoms: list[bytes] = []
            batch_ids: list[int] = []
            written = False

            def flush() -> None:
                nonlocal written
                if not batch_ids and written:
                    return
                idx = np.asarray(batch_ids, np.int64)
                data = [idx, total_pixels[idx].astype(np.int64), total_area[idx]]
                data += [np.round(mean[idx], 4) for mean in means.values()]
                pyogrio.raw.write(out, np.array(batch_geoms, dtype=object), data, fields, driver="GPKG", layer=LAYER,
                                  geometry_type="Polygon", crs=crs.to_wkt(), append=written)
                written = True
                batch_geoms.clear()
                batch_ids.clear()

            for geom, value in shapes(band, mask=rasterio.band(msk, 1), connectivity=4, transform=src.transform):
                batch_geoms.append(shapely.to_wkb(shapely.geometry.shape(geom)))
                batch_ids.append(int(value))
                if len(batch_ids) >= BATCH:
                    flush()
            flush()
    write_gpkg_style(gpkg_path, LAYER, "polygons")  # QGIS's default style inside the GeoPackage + a .qml sidecar
    return m, float(total_area[1:].sum()) if m else 0.0
