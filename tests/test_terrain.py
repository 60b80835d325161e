"""Horn slope and true pixel sizes, checked against tilted planes whose slope is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Geod, Transformer
from affine import Affine

from slidemap.data.sites.terrain import horn_slope, pixel_size_m
from slidemap.errors import InputError


def from_origin(x0: float, y0: float, px: float, py: float) -> Affine:
    return Affine(px, 0.0, x0, 0.0, -py, y0)


def tilted_plane(shape: tuple[int, int], dx: float, dy: float, gx: float, gy: float) -> np.ndarray:
    """z = gx * east + gy * north in metres (rows go south), sampled at pixel centres."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    return gx * cols * dx - gy * rows * dy


@pytest.mark.parametrize(("dx", "dy"), [(10.0, 10.0), (12.5, 12.5), (30.0, 20.0), (0.5, 2.0)])
@pytest.mark.parametrize(("gx", "gy", "degrees"), [
    (0.1, 0.0, math.degrees(math.atan(0.1))),
    (0.0, -0.1, math.degrees(math.atan(0.1))),
    (0.3, 0.4, math.degrees(math.atan(0.5))),  # |grad| = 0.5 (3-4-5)
    (1.0, 0.0, 45.0),
])
def test_plane_has_its_slope_everywhere_including_border(dx, dy, gx, gy, degrees):
    slope = horn_slope(tilted_plane((7, 9), dx, dy, gx, gy), dx, dy)
    assert slope.dtype == np.float32 and slope.shape == (7, 9)
    np.testing.assert_allclose(slope, degrees, atol=1e-4)


def test_flat_dem_is_zero_and_single_row_works():
    np.testing.assert_array_equal(horn_slope(np.full((4, 5), 250.0), 10.0, 10.0), 0.0)
    row = np.array([[0.0, 1.0, 2.0, 3.0]])  # 1 m rise per 10 m pixel
    np.testing.assert_allclose(horn_slope(row, 10.0, 10.0), math.degrees(math.atan(0.1)), atol=1e-4)


@pytest.mark.parametrize(("hole", "nan_block"), [
    ((3, 3), (slice(2, 5), slice(2, 5))),  # interior: the whole 3x3 window
    ((0, 0), (slice(0, 2), slice(0, 2))),  # corner: only the pixels that see it
    ((0, 4), (slice(0, 2), slice(3, 6))),  # top edge
    ((6, 6), (slice(5, 7), slice(5, 7))),  # opposite corner
])
def test_nan_reaches_exactly_the_windows_that_touch_it(hole, nan_block):
    dem = tilted_plane((7, 7), 10.0, 10.0, 0.2, 0.1)
    dem[hole] = np.nan
    expected = np.zeros((7, 7), bool)
    expected[nan_block] = True
    slope = horn_slope(dem, 10.0, 10.0)
    np.testing.assert_array_equal(np.isnan(slope), expected)
    np.testing.assert_allclose(slope[~expected], math.degrees(math.atan(math.hypot(0.2, 0.1))), atol=1e-4)


def test_bad_pixel_sizes_are_rejected():
    with pytest.raises(ValueError, match="one value per row"):
        horn_slope(np.zeros((3, 4)), np.ones(4), 10.0)
    with pytest.raises(ValueError, match="positive"):
        horn_slope(np.zeros((3, 4)), 0.0, 10.0)


def test_projected_metre_crs_uses_the_transform():
    dx, dy = pixel_size_m("EPSG:32651", from_origin(500000, 2500000, 10, 12.5), (4, 4))
    assert (dx, dy) == (10.0, 12.5)


def test_feet_crs_converts_to_metres_and_keeps_the_plane_slope():
    # EPSG:2227 is in US survey feet: 1 ft = 1200/3937 m, so a 30 ft pixel is 9.144018... m.
    dx, dy = pixel_size_m("EPSG:2227", from_origin(6_000_000, 2_000_000, 30, 30), (5, 6))
    assert dx == pytest.approx(30 * 1200 / 3937, rel=1e-12)
    assert dy == pytest.approx(30 * 1200 / 3937, rel=1e-12)
    # z rises 0.1 m per metre east: 0.9144 m per 30 ft pixel -> atan(0.1); taking 30 as metres would not.
    dem = np.tile(np.arange(6) * 0.1 * 30 * 1200 / 3937, (5, 1))
    np.testing.assert_allclose(horn_slope(dem, dx, dy), math.degrees(math.atan(0.1)), atol=1e-4)


def test_geographic_pixel_size_at_the_equator():
    # On the equator one degree of longitude is a*pi/180 = 111319.49 m and one of latitude is the meridional
    # radius a(1-e^2) times pi/180 = 110574.28 m (WGS84: a = 6378137, e^2 = f(2-f), f = 1/298.257223563).
    t = from_origin(30.0, 0.0005, 0.001, 0.001)  # row 0 centred on the equator
    dx, dy = pixel_size_m("EPSG:4326", t, (3, 4))
    f = 1 / 298.257223563
    e2 = f * (2 - f)
    assert dx.shape == (3,) and dy.shape == (3,)
    assert dx[0] == pytest.approx(111.3194908, rel=1e-8)
    assert dy[0] == pytest.approx(6378137 * (1 - e2) * math.pi / 180 / 1000, rel=1e-9)
    assert dx[2] < dx[0]  # parallels shrink away from the equator


def test_geographic_pixel_size_matches_geodesics_at_45_degrees():
    res, lon0, top = 0.0005, 10.0, 45.01
    dx, dy = pixel_size_m("EPSG:4326", from_origin(lon0, top, res, res), (40, 10))
    geod = Geod(ellps="WGS84")
    lat = top - res * (np.arange(40) + 0.5)
    _, _, east = geod.inv(np.full(40, lon0), lat, np.full(40, lon0 + res), lat)
    _, _, north = geod.inv(np.full(40, lon0), lat - res / 2, np.full(40, lon0), lat + res / 2)
    np.testing.assert_allclose(dx, east, rtol=1e-6)
    np.testing.assert_allclose(dy, north, rtol=1e-6)


def test_slope_on_a_geographic_grid_matches_a_local_metric_plane():
    res, lon0, top, shape = 1e-4, 10.0, 40.002, (40, 50)
    t = from_origin(lon0, top, res, res)
    cols, rows = np.meshgrid(np.arange(shape[1]) + 0.5, np.arange(shape[0]) + 0.5)
    lon, lat = lon0 + res * cols, top - res * rows
    # A transverse Mercator centred on the grid gives true metres (scale error ~1e-7 over 4 km).
    tm = Transformer.from_crs("EPSG:4326", "+proj=tmerc +lat_0=40 +lon_0=10.0025 +k=1 +ellps=WGS84",
                              always_xy=True)
    x, y = tm.transform(lon, lat)
    dem = 0.1 * np.asarray(x) + 0.05 * np.asarray(y)
    dx, dy = pixel_size_m("EPSG:4326", t, shape)
    slope = horn_slope(dem, dx, dy)
    np.testing.assert_allclose(slope, math.degrees(math.atan(math.hypot(0.1, 0.05))), atol=0.01)
    # Taking degrees as if they were metres would be nonsense: check we did not.
    assert np.all(slope < 10)


def test_crs_neither_projected_nor_geographic_is_an_input_error():
    with pytest.raises(InputError, match="neither projected nor geographic") as err:
        pixel_size_m("EPSG:4978", from_origin(0, 0, 1, 1), (2, 2), path="s2.tif")
    assert err.value.path == "s2.tif"
