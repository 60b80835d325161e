"""Write the synthetic sites to disk in exactly the user's format (the site contract, docs/data.md), once per
seed/scale."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
import shapely
import yaml
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject
from shapely import affinity
from shapely.geometry import mapping

from slidemap.config_checks import check_seed
from slidemap.data.synthetic.defaults import DEFAULT_SCALE, DEFAULT_SEED
from slidemap.data.synthetic.before import render_before
from slidemap.data.synthetic.landslides import make_landslides
from slidemap.data.synthetic.relief import carve_terrain, slope_aspect
from slidemap.data.synthetic.scene import render
from slidemap.data.synthetic.specs import SITES, SiteSpec
from slidemap.errors import InputError
from slidemap.io import atomic_dir, check_replaceable
from slidemap.styles import write_raster_style

log = logging.getLogger(__name__)

STAMP_FILE = "synthetic.json"
GENERATOR_VERSION = 2  # 2: s2_pre.tif
PIXEL_M = 10.0
DEM_PIXEL_M = 12.5
MARGIN_PX = 24  # terrain beyond the s2 extent, so the DEM (and slope) at the edge has real neighbours


def _utm_origin(spec: SiteSpec) -> tuple[float, float]:
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{spec.epsg}", always_xy=True)
    x, y = to_utm.transform(spec.lon, spec.lat)
    return round(x / PIXEL_M) * PIXEL_M, round(y / PIXEL_M) * PIXEL_M


def build_site(spec: SiteSpec, seed: int, scale: float) -> dict:
    """Generate one site in memory: reflectance, DEM on its own 12.5 m grid, polygons in the site CRS."""
    rng = np.random.default_rng([seed, list(SITES).index(spec.name), int(round(scale * 1e6))])
    rows, cols = spec.scaled_shape(scale)
    big = (rows + 2 * MARGIN_PX, cols + 2 * MARGIN_PX)
    terrain_big = carve_terrain(rng, spec, big)
    crop = (slice(MARGIN_PX, MARGIN_PX + rows), slice(MARGIN_PX, MARGIN_PX + cols))
    terrain = {k: v[crop] for k, v in terrain_big.items()}
    slope, aspect, down_r, down_c = slope_aspect(terrain["elev"], PIXEL_M)
    terrain.update(slope=slope, aspect=aspect, down_r=down_r, down_c=down_c)
    polys = make_landslides(rng, spec, terrain, (rows, cols))
    if spec.name == "taiwan":
        older = replace(spec, slide_fraction=0.10, runout_share=0.2)
        terrain["old_scars"] = make_landslides(rng, older, terrain, (rows, cols))
    refl, ground = render(rng, spec, terrain, polys, (rows, cols))
    # its own stream, so the post-event image is the same with or without a pre-event one
    rng_before = np.random.default_rng([seed, list(SITES).index(spec.name), int(round(scale * 1e6)), 1])
    refl_pre, pre_nodata, pre_notes = render_before(rng_before, spec, ground, terrain, polys,
                                                           (rows, cols))

    x0, y0 = _utm_origin(spec)
    top = y0 + rows * PIXEL_M
    transform = from_origin(x0, top, PIXEL_M, PIXEL_M)
    big_transform = from_origin(x0 - MARGIN_PX * PIXEL_M, top + MARGIN_PX * PIXEL_M, PIXEL_M, PIXEL_M)
    crs = CRS.from_epsg(spec.epsg)
    margin_m = 16 * DEM_PIXEL_M
    dem_cols = int(np.ceil((cols * PIXEL_M + 2 * margin_m) / DEM_PIXEL_M))
    dem_rows = int(np.ceil((rows * PIXEL_M + 2 * margin_m) / DEM_PIXEL_M))
    dem_transform = from_origin(x0 - margin_m, top + margin_m, DEM_PIXEL_M, DEM_PIXEL_M)
    dem = np.full((dem_rows, dem_cols), -9999.0, np.float32)
    reproject(terrain_big["elev"], dem, src_transform=big_transform, src_crs=crs, dst_transform=dem_transform,
              dst_crs=crs, src_nodata=None, dst_nodata=-9999.0, resampling=Resampling.bilinear)

    dn = np.round(refl * 10000).astype(np.uint16)
    if spec.name == "japan":  # a swath-edge wedge of no-data, as real tiles have
        rr, cc = np.mgrid[0:rows, 0:cols]
        dn[:, (rr + cc) < 0.08 * (rows + cols)] = 0
    dn_pre = np.round(refl_pre * 10000).astype(np.uint16)
    dn_pre[:, pre_nodata] = 0
    pixel_to_world = [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]  # shapely order
    world = [affinity.affine_transform(p, pixel_to_world) for p in polys]
    return {"dn": dn, "transform": transform, "crs": crs, "dem": dem, "dem_transform": dem_transform,
            "polygons": world, "dn_pre": dn_pre, "pre_notes": pre_notes}


def _write_site(folder: Path, spec: SiteSpec, site: dict, seed: int, scale: float) -> None:
    folder.mkdir(parents=True)
    dn = site["dn"]
    profile = dict(driver="GTiff", width=dn.shape[2], height=dn.shape[1], count=4, dtype="uint16", crs=site["crs"],
                   transform=site["transform"], nodata=0, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate")
    for name, image in (("s2.tif", dn), ("s2_pre.tif", site["dn_pre"])):
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(image)
            for i, band in enumerate(("B2", "B3", "B4", "B8"), start=1):
                dst.set_band_description(i, band)
        write_raster_style(folder / name, "s2")  # colour interpretation + a true-colour QGIS style sidecar
    dem = site["dem"]
    with rasterio.open(folder / "dem.tif", "w", driver="GTiff", width=dem.shape[1], height=dem.shape[0], count=1,
                       dtype="float32", crs=site["crs"], transform=site["dem_transform"], nodata=-9999.0,
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(dem, 1)
    to_wgs84 = Transformer.from_crs(site["crs"], "EPSG:4326", always_xy=True)
    features = []
    for i, poly in enumerate(site["polygons"]):
        geo = shapely.transform(poly, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])))
        geo = shapely.set_precision(geo, 1e-9)
        features.append({"type": "Feature", "properties": {"id": i, "area_m2": round(poly.area, 1)},
                         "geometry": mapping(geo)})
    (folder / "inventory.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    meta = {"description": spec.description, "bands": ["B2", "B3", "B4", "B8"], "scale": 0.0001, "offset": 0.0,
            "synthetic": {"seed": seed, "scale": scale, "version": GENERATOR_VERSION},
            "pre_event": {"description": "the same ground weeks before the event (s2_pre.tif)", **site["pre_notes"]}}
    (folder / "site.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))


def write_synthetic(out: str | Path, scale: float = DEFAULT_SCALE, seed: int = DEFAULT_SEED,
                    overwrite: bool = True) -> Path:
    """Generate the three sites into ``out`` (replacing it atomically unless ``overwrite`` is False).

    Only an earlier synthetic folder is replaced: a folder holding anything else is refused, never emptied.
    """
    out = Path(out)
    if not scale > 0:
        raise InputError("--scale", f"scale must be positive, got {scale}")
    check_seed("--seed", seed)
    check_replaceable(out, [*SITES, STAMP_FILE], "slidemap synth")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for spec in SITES.values():
            start = time.perf_counter()
            _write_site(tmp / spec.name, spec, build_site(spec, seed, scale), seed, scale)
            log.info("synthetic site %s written in %.1f s", spec.name, time.perf_counter() - start)
        stamp = {"seed": seed, "scale": scale, "version": GENERATOR_VERSION, "sites": list(SITES)}
        (tmp / STAMP_FILE).write_text(json.dumps(stamp, indent=2))
    return out


def ensure_synthetic(out: str | Path, scale: float = DEFAULT_SCALE, seed: int = DEFAULT_SEED) -> Path:
    """Return ``out``, generating it first unless it already holds this (seed, scale, version)."""
    out = Path(out)
    stamp = out / STAMP_FILE
    if stamp.exists():
        got = json.loads(stamp.read_text())
        if (got.get("seed"), got.get("scale"), got.get("version")) == (seed, scale, GENERATOR_VERSION):
            return out
    # A parallel sweep may start several jobs at once: if another finishes the folder first, keep theirs.
    return write_synthetic(out, scale=scale, seed=seed, overwrite=out.exists())
