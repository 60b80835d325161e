"""Write tiny site folders (a few hundred pixels) in odd CRSs, so reader tests exercise real reprojection."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import rasterio
import shapely
import yaml
from affine import Affine
from pyproj import Transformer
from rasterio.warp import transform_bounds

S2_CRS = "EPSG:32651"  # UTM 51N (Taiwan), as the synthetic taiwan site
ORIGIN = (500_000.0, 2_500_000.0)  # upper-left corner, ~22.6 N 123 E
PIXEL = 10.0
SHAPE = (16, 20)  # rows, cols
DN = (500, 600, 700, 3000)  # B2, B3, B4, B8 digital numbers of the default site
SQUARE_PX = ((2.2, 3.3), (6.8, 3.3), (6.8, 7.6), (2.2, 7.6))
"""A landslide square in (col, row) pixel coordinates: centres of cols 2..6 and rows 3..7 fall inside."""
FAR_SQUARE_PX = ((200.2, 3.3), (206.8, 3.3), (206.8, 7.6), (200.2, 7.6))
"""A polygon well outside the default footprint (must not count)."""
BOW_TIE_PX = ((1.3, 1.1), (8.9, 1.2), (1.4, 8.9), (9.1, 9.0))
"""Top-left, top-right, bottom-left, bottom-right: as a ring it crosses itself (no pixel centre within 0.05 px)."""
FEET_CRS = "EPSG:2227"  # NAD83 / California zone 3, US survey feet
US_FOOT_M = 1200.0 / 3937.0


def apply(t: Affine, col: Any, row: Any) -> tuple[Any, Any]:
    """Pixel (col, row) -> CRS (x, y); spelled out because affine 3 deprecates ``t * (x, y)``."""
    return t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f


def s2_transform(origin: tuple[float, float] = ORIGIN, pixel: float = PIXEL) -> Affine:
    return Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1])


def write_raster(path: Path, data: np.ndarray, crs: Any, transform: Affine | None, nodata: float | None = None,
                 descriptions: Sequence[str] | None = None) -> Path:
    """A GeoTIFF from a (H, W) or (C, H, W) array."""
    arr = data[None] if data.ndim == 2 else data
    profile = {"driver": "GTiff", "count": arr.shape[0], "height": arr.shape[1], "width": arr.shape[2],
               "dtype": arr.dtype.name, "crs": crs, "nodata": nodata}
    if transform is not None:
        profile["transform"] = transform
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
        for i, text in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, text)
    return path


def constant_bands(values: Sequence[float], shape: tuple[int, int] = SHAPE, dtype: Any = np.uint16) -> np.ndarray:
    """(C, H, W) stack with one constant value per band."""
    return np.stack([np.full(shape, v, dtype=dtype) for v in values])


def plane(gx: float, gy: float, z0: float = 100.0, origin: tuple[float, float] = ORIGIN,
          unit_m: float = 1.0) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """z = z0 + gx * east + gy * north, with east/north in metres from ``origin`` (CRS units * unit_m)."""
    return lambda x, y: z0 + gx * (x - origin[0]) * unit_m + gy * (y - origin[1]) * unit_m


def write_dem_geographic(path: Path, s2_crs: Any, s2_affine: Affine, shape: tuple[int, int],
                         z: Callable[[np.ndarray, np.ndarray], np.ndarray], res_deg: float = 8e-5,
                         margin_px: int = 4) -> Path:
    """A float32 DEM on an EPSG:4326 grid around the s2 footprint; ``z`` is evaluated in s2 CRS coordinates."""
    left, top = apply(s2_affine, 0, 0)
    right, bottom = apply(s2_affine, shape[1], shape[0])
    w, s, e, n = transform_bounds(s2_crs, "EPSG:4326", left, bottom, right, top, densify_pts=21)
    w, s, e, n = w - margin_px * res_deg, s - margin_px * res_deg, e + margin_px * res_deg, n + margin_px * res_deg
    width, height = int(np.ceil((e - w) / res_deg)), int(np.ceil((n - s) / res_deg))
    t = s2_transform((w, n), res_deg)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    lon, lat = apply(t, cols, rows)
    x, y = Transformer.from_crs("EPSG:4326", s2_crs, always_xy=True).transform(lon, lat)
    return write_raster(path, z(np.asarray(x), np.asarray(y)).astype(np.float32), "EPSG:4326", t, nodata=np.nan)


def pixel_polygon(transform: Affine, corners_px: Sequence[tuple[float, float]]) -> shapely.Polygon:
    """A polygon in CRS coordinates from (col, row) pixel coordinates, in the given vertex order."""
    return shapely.Polygon([apply(transform, c, r) for c, r in corners_px])


def to_crs(geom: Any, src: Any, dst: Any) -> Any:
    """Reproject the vertices of a shapely geometry (what GIS software does when saving in another CRS)."""
    tr = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def write_geojson(path: Path, geoms: Sequence[Any]) -> Path:
    """RFC 7946 GeoJSON (longitude/latitude, no 'crs' member) by hand, as many tools write it."""
    feats = [{"type": "Feature", "properties": {"id": i}, "geometry": shapely.geometry.mapping(g)}
             for i, g in enumerate(geoms)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def write_vector(path: Path, geoms: Sequence[Any], crs: str | None, driver: str) -> Path:
    """A Shapefile or GeoPackage through GDAL, with one integer attribute."""
    geom_type = "MultiPolygon" if any(g.geom_type == "MultiPolygon" for g in geoms) else geoms[0].geom_type
    pyogrio.raw.write(path, np.array(shapely.to_wkb(np.asarray(geoms, dtype=object))), [np.arange(len(geoms))],
                      ["id"], driver=driver, geometry_type=geom_type, crs=crs)
    return path


def write_yaml(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def make_site(folder: Path, *, bands: np.ndarray | None = None, nodata: float | None = 0,
              slope_gx: float = 0.1, slope_gy: float = 0.0, labels: str | None = "geojson",
              polygons_px: Sequence[Sequence[tuple[float, float]]] = (SQUARE_PX, FAR_SQUARE_PX)) -> Path:
    """A complete default site: uint16 s2 in UTM 51N, a tilted-plane DEM in EPSG:4326, labels in 4326 GeoJSON.

    ``labels`` is 'geojson', 'mask' (the square rasterised by hand) or None.
    """
    folder.mkdir(parents=True, exist_ok=True)
    t = s2_transform()
    write_raster(folder / "s2.tif", constant_bands(DN) if bands is None else bands, S2_CRS, t, nodata=nodata)
    write_dem_geographic(folder / "dem.tif", S2_CRS, t, SHAPE, plane(slope_gx, slope_gy))
    if labels == "geojson":
        geoms = [to_crs(pixel_polygon(t, p), S2_CRS, "EPSG:4326") for p in polygons_px]
        write_geojson(folder / "inventory.geojson", geoms)
    elif labels == "mask":
        mask = np.zeros(SHAPE, np.uint8)
        mask[3:8, 2:7] = 1
        write_raster(folder / "mask.tif", mask, S2_CRS, t, nodata=255)
    return folder
