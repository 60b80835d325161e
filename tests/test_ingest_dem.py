"""DEM tiles: mosaicked without a seam across a degree line, mixed CRSs, gaps named in lon/lat."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from pyproj import Geod, Transformer
from rasterio.crs import CRS

import ingest_fixtures as fx
from slidemap.data.sites.grid import Grid
from slidemap.data.sites.reader import read_site
from slidemap.errors import InputError
from slidemap.ingest import build_site, mosaic_dem

SITE = Grid(CRS.from_string(fx.UTM), fx.transform_at(fx.ORIGIN, 10.0), fx.SHAPE)
SITE_EAST_LON = 121.00623858  # lon of the product's north-east corner (its easternmost point)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return fx.split_dem(tmp_path_factory.mktemp("dem"))


def centres_lonlat(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:grid.shape[0], 0:grid.shape[1]] + 0.5
    t = grid.transform
    x, y = t.c + cols * t.a, t.f + rows * t.e
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def test_tiles_split_on_a_meridian_join_without_seam(tiles):
    dem = mosaic_dem(tiles, SITE)
    t = dem.grid.transform
    assert dem.grid.crs.to_epsg() == 4326 and dem.provenance["files"] == [str(p) for p in tiles]
    assert dem.provenance["resampled_bilinear"] == []  # both tiles are on one lattice: copied, not resampled
    lon_edges = t.c + t.a * np.arange(dem.grid.shape[1] + 1)
    assert lon_edges[0] < 121.0 < lon_edges[-1]  # the joint runs through the mosaic
    assert np.isfinite(dem.data).all()
    rows, cols = np.mgrid[0:dem.grid.shape[0], 0:dem.grid.shape[1]] + 0.5
    expected = fx.lonlat_plane(t.c + cols * t.a, t.f + rows * t.e).astype(np.float32)
    np.testing.assert_allclose(dem.data, expected, atol=1e-3)
    # margin: 8 DEM pixels beyond the site on every side, where the tiles reach
    w, s, e, n = dem.grid.bounds
    site_w, site_s, site_e, site_n = 120.99432909, 23.49439350, SITE_EAST_LON, 23.50537714
    assert site_w - w >= 8 * fx.DEM_RES - 1e-9 and e - site_e >= 8 * fx.DEM_RES - 1e-9
    assert site_s - s >= 8 * fx.DEM_RES - 1e-9 and n - site_n >= 8 * fx.DEM_RES - 1e-9


def test_site_dem_and_slope_have_no_seam(tmp_path, tiles):
    safe = fx.write_safe(tmp_path, clouds=False)
    build_site([safe], tiles, tmp_path / "site")
    site = read_site(tmp_path / "site", require_label=False)
    assert np.isfinite(site.dem).all() and np.isfinite(site.slope).all() and site.valid.all()
    lon, lat = centres_lonlat(Grid(site.crs, site.transform, site.shape))
    assert lon.min() < 121.0 < lon.max()
    np.testing.assert_allclose(site.dem, fx.lonlat_plane(lon, lat), atol=0.25)
    # slope of z = 3000 m/degree east + 4000 m/degree north, degree lengths from the WGS84 ellipsoid
    geod = Geod(ellps="WGS84")
    east_m = geod.inv(121.0, 23.5, 121.001, 23.5)[2] / 0.001
    north_m = geod.inv(121.0, 23.4995, 121.0, 23.5005)[2] / 0.001
    expected = math.degrees(math.atan(math.hypot(3000 / east_m, 4000 / north_m)))  # about 2.67 degrees
    np.testing.assert_allclose(site.slope, expected, atol=0.03)


def test_tiles_in_other_crs_are_warped_onto_the_first(tmp_path, tiles):
    # west half from the EPSG:4326 tile, east half only in a UTM DEM at 12.5 m (ALOS PALSAR style)
    utm = fx.write_dem_utm(tmp_path / "alos_utm.tif", (295_700.0, 2_599_500.0, 296_600.0, 2_601_000.0))
    dem = mosaic_dem([tiles[0], utm], SITE)
    assert dem.grid.crs.to_epsg() == 4326 and dem.provenance["resampled_bilinear"] == [str(utm)]
    lon, lat = centres_lonlat(dem.grid)
    inside = (lon > SITE_EAST_LON - 0.0115) & (lon < SITE_EAST_LON) & (lat > 23.4944) & (lat < 23.5053)
    assert np.isfinite(dem.data[inside]).all()
    np.testing.assert_allclose(dem.data[inside], fx.lonlat_plane(lon, lat)[inside], atol=0.3)


def test_uncovered_part_is_named_in_lonlat(tiles):
    with pytest.raises(InputError) as err:
        mosaic_dem([tiles[0]], SITE)  # only the tile west of 121 E
    msg = str(err.value)
    assert err.value.path == str(tiles[0]) and "\n" not in msg
    found = re.search(r"do not cover lon ([\d.]+) to ([\d.]+), lat ([\d.]+) to ([\d.]+) of the site", msg)
    assert found, msg
    w, e, s, n = map(float, found.groups())
    assert w == pytest.approx(121.0, abs=1e-5) and e == pytest.approx(SITE_EAST_LON, abs=1e-5)
    assert s == pytest.approx(23.4944, abs=2e-4) and n == pytest.approx(23.5054, abs=2e-4)


def test_tiles_elsewhere_are_reported_and_unused(tmp_path, tiles):
    far = fx.write_dem_tile(tmp_path / "far.tif", 10.0, 45.0, 10.05, 45.05)
    with pytest.raises(InputError, match=r"DEM tiles do not cover the site: the site is lon 120\.99433"):
        mosaic_dem([far], SITE)
    dem = mosaic_dem([*tiles, far], SITE)
    assert dem.provenance["unused"] == [str(far)]
