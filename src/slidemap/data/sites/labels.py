"""Landslide labels onto the s2 grid: inventory polygons in any CRS, or a ready 0/1 mask.tif on that grid."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import rasterio
import shapely
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio.features import rasterize
from scipy import ndimage

from slidemap.data.sites.grid import Grid, fmt_bounds
from slidemap.data.sites.raster import reading, valid_mask
from slidemap.errors import InputError

log = logging.getLogger(__name__)

INVENTORY_SUFFIXES = (".geojson", ".json", ".shp", ".gpkg")


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep only polygonal parts (as Polygon/MultiPolygon, or None when nothing polygonal is left)."""
    out = np.empty(len(geoms), dtype=object)
    for k, g in enumerate(geoms):
        if g is None or g.is_empty:
            out[k] = None
        elif g.geom_type in ("Polygon", "MultiPolygon"):
            out[k] = g
        else:
            parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
            polys = [q for p in parts for q in shapely.get_parts(p)]
            out[k] = shapely.MultiPolygon(polys) if polys else None
    return out


def read_inventory(path: Path, grid: Grid, meta: dict[str, Any]) -> tuple[np.ndarray, int]:
    """Landslide polygons in any CRS -> uint8 mask on the s2 grid (pixel centres inside) and feature count."""
    with reading(path):
        layers = pyogrio.list_layers(path)
        layer = None
        if len(layers) > 1:
            polygon_layers = [str(n) for n, t in layers if t and "POLYGON" in str(t).upper()]
            layer = polygon_layers[0] if polygon_layers else str(layers[0][0])
            log.warning("%s: %d layers; using '%s'", path, len(layers), layer)
        info, _, wkb, _ = pyogrio.raw.read(path, layer=layer, columns=[], force_2d=True)
    if len(wkb) == 0:
        raise InputError(path, "empty inventory: no features")
    src_crs = info.get("crs")
    if src_crs is None:
        if path.suffix.lower() in (".geojson", ".json"):
            src_crs = "EPSG:4326"  # RFC 7946: GeoJSON coordinates are WGS84 longitude/latitude
        elif path.suffix.lower() == ".shp":
            raise InputError(path, f"has no CRS: {path.with_suffix('.prj').name} is missing")
        else:
            raise InputError(path, "has no CRS")
    geoms = _polygonal(shapely.from_wkb(wkb))
    skipped = int(sum(g is None for g in geoms))
    if skipped:
        log.warning("%s: skipped %d feature(s) without polygon geometry", path, skipped)
        meta["skipped_features"] = skipped
    geoms = geoms[[g is not None for g in geoms]]
    if len(geoms) == 0:
        raise InputError(path, f"empty inventory: none of the {len(wkb)} features is a polygon")
    own_bounds = shapely.total_bounds(geoms)
    with reading(path):
        dst = ProjCRS.from_user_input(grid.crs.to_wkt())
        src = ProjCRS.from_user_input(src_crs)
        if src.is_geographic and not (-180 <= own_bounds[0] <= own_bounds[2] <= 360
                                      and -90 <= own_bounds[1] <= own_bounds[3] <= 90):
            raise InputError(path, f"coordinates {fmt_bounds(own_bounds, src)} cannot be longitudes/latitudes of its "
                                   "CRS; is the CRS declared wrong (e.g. metres in a GeoJSON, which means EPSG:4326)?")
        if not src.equals(dst):
            tr = Transformer.from_crs(src, dst, always_xy=True)
            geoms = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
            if not np.isfinite(shapely.get_coordinates(geoms)).all():
                raise InputError(path, f"coordinates {fmt_bounds(own_bounds, src)} cannot be in its CRS: they do not "
                                       "project onto the site's CRS; is the CRS declared wrong?")
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        repaired = _polygonal(shapely.make_valid(geoms[invalid]))
        geoms[invalid] = repaired
        log.warning("%s: repaired %d invalid polygon(s) (e.g. self-intersections)", path, int(invalid.sum()))
        meta["repaired_polygons"] = int(invalid.sum())
        geoms = geoms[[g is not None for g in geoms]]
    footprint = shapely.box(*grid.bounds)
    hits = geoms[shapely.intersects(geoms, footprint)]
    if len(hits) == 0:
        raise InputError(path, f"no landslide polygon intersects s2.tif: inventory bounds "
                               f"{fmt_bounds(own_bounds, src)} = "
                               f"{fmt_bounds(shapely.total_bounds(geoms), grid.crs)} vs s2.tif bounds "
                               f"{fmt_bounds(grid.bounds, grid.crs)}")
    label = rasterize(((g, 1) for g in hits), out_shape=grid.shape, transform=grid.transform,
                      fill=0, all_touched=False, dtype=np.uint8)
    return label, len(hits)


def read_mask(path: Path, grid: Grid) -> tuple[np.ndarray, np.ndarray, int]:
    """A ready 0/1 mask.tif on exactly the s2 grid -> (label, valid, connected-component count)."""
    with reading(path), rasterio.open(path) as src:
        t, g = src.transform, grid.transform
        tol = 1e-3 * min(abs(g.a), abs(g.e))
        same_crs = src.crs is not None and (src.crs == grid.crs or src.crs.to_epsg() == grid.crs.to_epsg() is not None)
        same = (same_crs and (src.height, src.width) == grid.shape
                and all(abs(u - v) <= tol for u, v in zip(t[:6], g[:6], strict=True)))
        if not same:
            raise InputError(path, f"must be on the grid of the site's image (s2.tif or image.tif): got shape "
                                   f"{(src.height, src.width)}, "
                                   f"transform {tuple(t)[:6]}, CRS {src.crs}; the image has shape {grid.shape}, "
                                   f"transform {tuple(g)[:6]}, CRS {grid.crs}")
        data = src.read(1)
        valid = valid_mask(src, 1, data)
    bad = valid & (data != 0) & (data != 1)
    if bad.any():
        values = ", ".join(f"{v:g}" for v in np.unique(data[bad])[:5])
        raise InputError(path, f"values must be 0, 1 or nodata; found {values}")
    label = (valid & (data == 1)).astype(np.uint8)
    _, count = ndimage.label(label, structure=np.ones((3, 3), dtype=bool))
    return label, valid, int(count)


def find_inventory(folder: Path) -> Path | None:
    """The site's one ``inventory.*`` (None without one); several are refused, since none would be the obvious one."""
    found = sorted(p for p in folder.glob("inventory.*") if p.suffix.lower() in INVENTORY_SUFFIXES)
    if len(found) > 1:
        raise InputError(folder, f"several inventories ({', '.join(p.name for p in found)}); keep exactly one")
    return found[0] if found else None
