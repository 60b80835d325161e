"""Sites of other sensors fabricated from the synthetic Sentinel-2 sites: the same ground, other bands, pixel sizes,
units and CRSs, so a test knows what a correct reader must give.

- ``aerial_rgb``: an 8-bit RGBA orthophoto (red, green, blue by colour interpretation, alpha = valid) at 0.5 m, in
  brightness units, with a DSM in geographic coordinates (EPSG:4326) while the image is in UTM.
- ``planetscope``: 4-band 16-bit surface reflectance (DN x 1e-4) in PlanetScope's band order blue, green, red, nir,
  named by band descriptions, at 3 m, DEM in the image's CRS.

The ground is the synthetic site's, pixel for pixel; only the pixel size changes, so elevations are scaled by the
same factor and slopes stay those of the original site.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import yaml
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.warp import Resampling, calculate_default_transform, reproject

from slidemap.data.sites.reader import read_site

CROP = 160
"""Rows and columns kept of each synthetic site: small enough for a tiny run, big enough for 32 px windows."""


def _grid(site, pixel: float) -> Affine:
    t = site.transform
    return Affine(pixel, 0.0, t.c, 0.0, -pixel, t.f)


def _write(path: Path, data: np.ndarray, crs, transform: Affine, **extra) -> None:
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, **extra}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def write_dem(path: Path, dem: np.ndarray, crs, transform: Affine, dst_crs: str | None = None) -> None:
    """A float32 DEM/DSM, reprojected into ``dst_crs`` (bilinear) when given."""
    if dst_crs is None:
        _write(path, dem[None].astype(np.float32), crs, transform, nodata=-9999.0)
        return
    h, w = dem.shape
    left, top = transform.c, transform.f
    right, bottom = left + w * transform.a, top + h * transform.e
    dst_t, dw, dh = calculate_default_transform(crs, dst_crs, w, h, left=left, bottom=bottom, right=right, top=top)
    out = np.full((dh, dw), -9999.0, np.float32)
    reproject(dem.astype(np.float32), out, src_transform=transform, src_crs=crs, dst_transform=dst_t,
              dst_crs=dst_crs, resampling=Resampling.bilinear, src_nodata=-9999.0, dst_nodata=-9999.0)
    _write(path, out[None], dst_crs, dst_t, nodata=-9999.0)


def write_sensor_site(s2_site: Path, out: Path, kind: str) -> Path:
    """One site folder of another sensor made from the synthetic site folder ``s2_site``."""
    site = read_site(s2_site)
    rows = cols = slice(0, CROP)
    refl = site.bands[:, rows, cols]  # blue, green, red, nir
    valid = site.valid[rows, cols]
    label = site.label[rows, cols]
    out.mkdir(parents=True)
    if kind == "aerial_rgb":
        pixel = 0.5
        rgb = np.clip(refl[[2, 1, 0]] / 0.3 * 255, 0, 255).round().astype(np.uint8)  # brightness, not reflectance
        alpha = np.where(valid, 255, 0).astype(np.uint8)[None]
        transform = _grid(site, pixel)
        _write(out / "image.tif", np.concatenate([rgb, alpha]), site.crs, transform, photometric="RGB")
        with rasterio.open(out / "image.tif", "r+") as dst:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        meta = {"sensor": "aerial RGB orthophoto", "units": "brightness"}
        dem_crs = "EPSG:4326"
    elif kind == "planetscope":
        pixel = 3.0
        dn = np.where(valid, np.round(refl * 10000), 0).astype(np.uint16)
        transform = _grid(site, pixel)
        _write(out / "image.tif", dn, site.crs, transform, nodata=0)
        with rasterio.open(out / "image.tif", "r+") as dst:
            for i, name in enumerate(("blue", "green", "red", "nir"), start=1):
                dst.set_band_description(i, name)
        meta = {"sensor": "PlanetScope"}
        dem_crs = None
    else:
        raise ValueError(kind)
    factor = pixel / abs(site.transform.a)
    dem = site.dem[rows, cols] * factor  # the same slopes at the new pixel size
    write_dem(out / "dem.tif", np.where(valid, dem, -9999.0), site.crs, transform, dem_crs)
    _write(out / "mask.tif", label[None].astype(np.uint8), site.crs, transform)
    (out / "site.yaml").write_text(yaml.safe_dump(meta))
    return out


def write_sensor_sites(synthetic_root: Path, root: Path, kind: str) -> Path:
    """The three synthetic sites as sites of sensor ``kind`` under ``root``."""
    for name in ("china", "japan", "taiwan"):
        write_sensor_site(synthetic_root / name, root / name, kind)
    return root
