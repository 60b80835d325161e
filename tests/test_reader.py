"""Reading site folders: values land on the s2 grid as computed by hand, and every bad input names its file."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely

import fake_sites as fs
from slidemap.data.sites.reader import band_name, list_sites, read_site, read_sites
from slidemap.errors import InputError

T = fs.s2_transform()


def square_label() -> np.ndarray:
    """SQUARE_PX spans cols 2.2-6.8 and rows 3.3-7.6: the centres (c + 0.5, r + 0.5) inside are cols 2-6, rows 3-7."""
    label = np.zeros(fs.SHAPE, np.uint8)
    label[3:8, 2:7] = 1
    return label


# ---------------------------------------------------------------- s2.tif: reflectance, band order, nodata


def test_uint16_default_scale_is_1e4(tmp_path):
    site = read_site(fs.make_site(tmp_path / "taiwan"))
    assert site.name == "taiwan" and site.bands.dtype == np.float32 and site.bands.shape == (4, *fs.SHAPE)
    # DN 500, 600, 700, 3000 -> reflectance 0.05, 0.06, 0.07, 0.30
    for k, expected in enumerate((0.05, 0.06, 0.07, 0.30)):
        np.testing.assert_allclose(site.bands[k], expected, rtol=1e-6)
    assert site.valid.all() and site.crs.to_epsg() == 32651 and site.transform == T


def test_site_yaml_scale_and_offset_win(tmp_path):
    # Processing baseline 04.00: reflectance = (DN - 1000) / 10000, i.e. scale 1e-4, offset -0.1.
    folder = fs.make_site(tmp_path / "s")
    fs.write_yaml(folder, {"scale": 1e-4, "offset": -0.1, "description": "PB 04.00", "sensor": "S2B"})
    site = read_site(folder)
    for k, expected in enumerate((-0.05, -0.04, -0.03, 0.20)):
        np.testing.assert_allclose(site.bands[k], expected, atol=1e-6)
    assert site.meta["description"] == "PB 04.00" and site.meta["sensor"] == "S2B"  # unknown keys kept


def test_float_reflectance_is_taken_as_is_and_nan_is_invalid(tmp_path):
    bands = fs.constant_bands((0.05, 0.06, 0.07, 0.3), dtype=np.float32)
    bands[1, 2, 3] = np.nan
    site = read_site(fs.make_site(tmp_path / "s", bands=bands, nodata=None))
    np.testing.assert_allclose(site.bands[3][0, 0], 0.3, rtol=1e-6)
    expected_valid = np.ones(fs.SHAPE, bool)
    expected_valid[2, 3] = False
    np.testing.assert_array_equal(site.valid, expected_valid)
    assert np.all(site.bands[:, 2, 3] == 0)


def test_float_digital_numbers_without_a_scale_are_refused_in_one_line(tmp_path):
    bands = fs.constant_bands((500.0, 600.0, 700.0, 3000.0), dtype=np.float32)  # DNs stored as floats
    folder = fs.make_site(tmp_path / "s", bands=bands, nodata=None)
    with pytest.raises(InputError, match=r"s2.tif: values cannot be surface reflectance \(median 650 after "
                                         r"conversion.*add 'scale: 0.0001'"):
        read_site(folder)
    fs.write_yaml(folder, {"scale": 1e-4})  # said: read as DN x 1e-4
    np.testing.assert_allclose(read_site(folder).bands[:, 0, 0], [0.05, 0.06, 0.07, 0.30], rtol=1e-6)
    fs.write_yaml(folder, {"scale": 0.1})  # a wrong scale is named too
    with pytest.raises(InputError, match=r"median 65 after conversion.*check site.yaml's 'scale' \(0.1\)"):
        read_site(folder)


def test_band_order_from_site_yaml_picks_b8_not_b8a(tmp_path):
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    bands = fs.constant_bands([100 * (k + 1) for k in range(13)])  # band k (1-based) holds DN 100 k
    folder = fs.make_site(tmp_path / "s", bands=bands)
    fs.write_yaml(folder, {"bands": names})
    site = read_site(folder)
    # B2 is band 2 (DN 200), B3 band 3, B4 band 4, B8 band 8 (DN 800; B8A is band 9)
    np.testing.assert_allclose(site.bands[:, 0, 0], [0.02, 0.03, 0.04, 0.08], rtol=1e-6)


@pytest.mark.parametrize("descriptions", [["B8", "B4", "B3", "B2"], ["nir", "red", "green", "blue"],
                                          ["B08 (842 nm)", "B04", "B03", "B02"]])
def test_band_order_from_band_descriptions(tmp_path, descriptions):
    folder = fs.make_site(tmp_path / "s")
    fs.write_raster(folder / "s2.tif", fs.constant_bands((800, 400, 300, 200)), fs.S2_CRS, T, nodata=0,
                    descriptions=descriptions)
    np.testing.assert_allclose(read_site(folder).bands[:, 0, 0], [0.02, 0.03, 0.04, 0.08], rtol=1e-6)


def test_band_name_normalisation():
    assert [band_name(s) for s in ("B02", "b8", "B8A", "nir", "B12", "quality")] == ["B2", "B8", "B8A", "B8",
                                                                                     "B12", None]


def test_nodata_in_any_band_or_the_dem_is_invalid_and_zeroed(tmp_path):
    bands = fs.constant_bands(fs.DN)
    bands[2, 1, 1] = 0  # B4 nodata at (1, 1)
    folder = fs.make_site(tmp_path / "s", bands=bands)
    dem = np.full(fs.SHAPE, 300, np.int16)  # DEM on the s2 grid with one hole at (5, 4)
    dem[5, 4] = -32768
    fs.write_raster(folder / "dem.tif", dem, fs.S2_CRS, T, nodata=-32768)
    site = read_site(folder)
    expected = np.ones(fs.SHAPE, bool)
    expected[1, 1] = False
    expected[4:7, 3:6] = False  # the slope window of every neighbour touches the hole
    np.testing.assert_array_equal(site.valid, expected)
    for arr in (*site.bands, site.dem, site.slope):
        assert np.all(arr[~expected] == 0)
    label = square_label()
    label[4:7, 3:6] = 0
    np.testing.assert_array_equal(site.label, label)
    assert np.all(site.dem[expected] == 300) and np.all(site.slope[expected] == 0)


# ---------------------------------------------------------------- dem.tif: reprojection and slope


def test_dem_in_4326_resamples_onto_utm_and_keeps_the_plane_slope(tmp_path):
    folder = fs.make_site(tmp_path / "s", slope_gx=0.1, slope_gy=0.05)
    site = read_site(folder)
    rows, cols = np.mgrid[0 : fs.SHAPE[0], 0 : fs.SHAPE[1]]
    expected_dem = 100 + 0.1 * (10 * cols + 5) - 0.05 * (10 * rows + 5)  # pixel centres, y decreases with rows
    np.testing.assert_allclose(site.dem, expected_dem, atol=0.01)
    np.testing.assert_allclose(site.slope, math.degrees(math.atan(math.hypot(0.1, 0.05))), atol=0.01)


def test_feet_crs_site_with_a_coarser_dem(tmp_path):
    folder = tmp_path / "feet"
    origin = (6_000_000.0, 2_000_000.0)
    t = fs.s2_transform(origin, 30.0)  # 30 US survey feet = 9.144 m pixels
    fs.write_raster(folder / "s2.tif", fs.constant_bands(fs.DN, (8, 10)), fs.FEET_CRS, t, nodata=0)
    dem_t = fs.s2_transform((origin[0] - 90, origin[1] + 90), 45.0)
    cols, rows = np.meshgrid(np.arange(18) + 0.5, np.arange(14) + 0.5)
    x_ft = dem_t.c + 45.0 * cols
    dem = (100 + 0.1 * (x_ft - origin[0]) * fs.US_FOOT_M).astype(np.float32)  # 0.1 m per metre east
    fs.write_raster(folder / "dem.tif", dem, fs.FEET_CRS, dem_t)
    site = read_site(folder, require_label=False)
    assert site.label is None and site.landslide_count is None
    np.testing.assert_allclose(site.slope, math.degrees(math.atan(0.1)), atol=0.01)


def test_partial_dem_coverage_warns_with_the_share(tmp_path, caplog):
    folder = fs.make_site(tmp_path / "s")
    fs.write_raster(folder / "dem.tif", np.full((16, 10), 50, np.int16), fs.S2_CRS, T, nodata=-1)
    with caplog.at_level(logging.WARNING):
        site = read_site(folder)
    assert "50.0%" in caplog.text and "dem.tif" in caplog.text
    assert site.valid[:, :9].all() and not site.valid[:, 9:].any()  # column 9's slope window leaves the DEM


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize(("filename", "crs", "driver"), [("inventory.geojson", "EPSG:4326", None),
                                                         ("inventory.json", "EPSG:4326", None),
                                                         ("inventory.shp", "EPSG:3857", "ESRI Shapefile"),
                                                         ("inventory.gpkg", "EPSG:3826", "GPKG")])
def test_square_polygon_rasterises_to_the_pixel_centres_inside(tmp_path, filename, crs, driver):
    folder = fs.make_site(tmp_path / "s", labels=None)
    geoms = [fs.to_crs(fs.pixel_polygon(T, p), fs.S2_CRS, crs) for p in (fs.SQUARE_PX, fs.FAR_SQUARE_PX)]
    if driver is None:
        fs.write_geojson(folder / filename, geoms)
    else:
        fs.write_vector(folder / filename, geoms, crs, driver)
    site = read_site(folder)
    assert site.label.dtype == np.uint8
    np.testing.assert_array_equal(site.label, square_label())
    assert site.landslide_count == 1  # the far square does not touch the footprint
    assert site.meta["label_source"] == filename


def test_bow_tie_is_repaired_into_two_triangles(tmp_path, caplog):
    tl, tr, bl, br = fs.BOW_TIE_PX
    folder = fs.make_site(tmp_path / "s", polygons_px=[(tl, tr, bl, br)])  # ring crosses itself
    with caplog.at_level(logging.WARNING):
        site = read_site(folder)
    assert site.meta["repaired_polygons"] == 1 and "repaired 1" in caplog.text
    # The diagonals tr-bl and br-tl cross at p; the valid parts are triangles (tl, tr, p) and (bl, br, p).
    (x1, y1), (x2, y2), (x3, y3), (x4, y4) = tr, bl, br, tl
    d = (x1 - x2) * (y3 - y4) - (y1 - y2) * (x3 - x4)
    u = ((x1 - x3) * (y3 - y4) - (y1 - y3) * (x3 - x4)) / d
    p = (x1 + u * (x2 - x1), y1 + u * (y2 - y1))

    def inside(tri, x, y):
        (ax, ay), (bx, by), (cx, cy) = tri
        s = [(bx - ax) * (y - ay) - (by - ay) * (x - ax), (cx - bx) * (y - by) - (cy - by) * (x - bx),
             (ax - cx) * (y - cy) - (ay - cy) * (x - cx)]
        return (s[0] > 0) & (s[1] > 0) & (s[2] > 0) | (s[0] < 0) & (s[1] < 0) & (s[2] < 0)

    rows, cols = np.mgrid[0 : fs.SHAPE[0], 0 : fs.SHAPE[1]] + 0.5
    expected = inside((tl, tr, p), cols, rows) | inside((bl, br, p), cols, rows)
    assert 20 < expected.sum() < 40
    np.testing.assert_array_equal(site.label, expected.astype(np.uint8))
    assert site.landslide_count == 1


def test_points_are_skipped_with_a_warning(tmp_path, caplog):
    folder = fs.make_site(tmp_path / "s", labels=None)
    square = fs.to_crs(fs.pixel_polygon(T, fs.SQUARE_PX), fs.S2_CRS, "EPSG:4326")
    fs.write_geojson(folder / "inventory.geojson", [square, square.centroid])
    with caplog.at_level(logging.WARNING):
        site = read_site(folder)
    assert "skipped 1" in caplog.text and site.meta["skipped_features"] == 1
    np.testing.assert_array_equal(site.label, square_label())


def test_mask_tif_with_nodata_and_8_connected_count(tmp_path):
    folder = fs.make_site(tmp_path / "s", labels=None)
    mask = np.zeros(fs.SHAPE, np.uint8)
    mask[2:4, 2:4] = 1
    mask[4, 4] = 1  # touches the first blob only diagonally: same 8-connected component
    mask[10:12, 15:18] = 1
    mask[0, 19] = 255  # nodata
    fs.write_raster(folder / "mask.tif", mask, fs.S2_CRS, T, nodata=255)
    site = read_site(folder)
    assert site.landslide_count == 2
    assert not site.valid[0, 19] and site.valid.sum() == 16 * 20 - 1
    expected = (mask == 1).astype(np.uint8)
    np.testing.assert_array_equal(site.label, expected)


def test_inventory_wins_over_mask_with_a_warning(tmp_path, caplog):
    folder = fs.make_site(tmp_path / "s")
    fs.write_raster(folder / "mask.tif", np.zeros(fs.SHAPE, np.uint8), fs.S2_CRS, T)
    with caplog.at_level(logging.WARNING):
        site = read_site(folder)
    assert "mask.tif" in caplog.text and site.label.sum() == 25


# ---------------------------------------------------------------- bad input


def error_of(folder: Path, **kwargs) -> InputError:
    with pytest.raises(InputError) as err:
        read_site(folder, **kwargs)
    assert "\n" not in str(err.value)
    return err.value


def test_missing_s2(tmp_path):
    folder = fs.make_site(tmp_path / "s")
    (folder / "s2.tif").unlink()
    err = error_of(folder)
    assert err.path.endswith("s2.tif") and "missing" in err.problem


def test_unreadable_s2_is_one_line(tmp_path):
    folder = fs.make_site(tmp_path / "s")
    (folder / "s2.tif").write_bytes(b"not a tiff at all")
    err = error_of(folder)
    assert err.path.endswith("s2.tif") and "cannot read" in err.problem


def test_s2_with_three_bands(tmp_path):
    err = error_of(fs.make_site(tmp_path / "s", bands=fs.constant_bands((1, 2, 3))))
    assert err.path.endswith("s2.tif") and "3 band" in err.problem and "need at least 4" in err.problem


def test_named_band_missing(tmp_path):
    folder = fs.make_site(tmp_path / "s")
    fs.write_yaml(folder, {"bands": ["B2", "B3", "B4", "B5"]})
    err = error_of(folder)
    assert err.path.endswith("s2.tif") and "band nir (B8) not found" in err.problem


def test_s2_without_crs(tmp_path):
    folder = fs.make_site(tmp_path / "s")
    fs.write_raster(folder / "s2.tif", fs.constant_bands(fs.DN), None, T, nodata=0)
    err = error_of(folder)
    assert err.path.endswith("s2.tif") and "no CRS" in err.problem


def test_missing_dem(tmp_path):
    folder = fs.make_site(tmp_path / "s")
    (folder / "dem.tif").unlink()
    err = error_of(folder)
    assert err.path.endswith("dem.tif") and "missing" in err.problem


def test_dem_not_overlapping(tmp_path):
    folder = fs.make_site(tmp_path / "s")
    fs.write_raster(folder / "dem.tif", np.zeros((5, 5), np.float32), "EPSG:4326", fs.s2_transform((10.0, 45.0), 0.01))
    err = error_of(folder)
    assert err.path.endswith("dem.tif") and "does not overlap s2.tif" in err.problem
    assert "500000" in err.problem  # the s2 bounds are named


def test_empty_inventory(tmp_path):
    folder = fs.make_site(tmp_path / "s", labels=None)
    (folder / "inventory.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    err = error_of(folder)
    assert err.path.endswith("inventory.geojson") and "empty inventory" in err.problem


def test_inventory_outside_the_footprint(tmp_path):
    err = error_of(fs.make_site(tmp_path / "s", polygons_px=[fs.FAR_SQUARE_PX]))
    assert err.path.endswith("inventory.geojson") and "no landslide polygon intersects s2.tif" in err.problem


def test_shapefile_without_prj(tmp_path):
    folder = fs.make_site(tmp_path / "s", labels=None)
    fs.write_vector(folder / "inventory.shp", [fs.pixel_polygon(T, fs.SQUARE_PX)], fs.S2_CRS, "ESRI Shapefile")
    (folder / "inventory.prj").unlink()
    err = error_of(folder)
    assert err.path.endswith("inventory.shp") and "inventory.prj is missing" in err.problem


def test_mask_with_value_2(tmp_path):
    folder = fs.make_site(tmp_path / "s", labels=None)
    mask = np.zeros(fs.SHAPE, np.uint8)
    mask[0, 0], mask[1, 1] = 2, 7
    fs.write_raster(folder / "mask.tif", mask, fs.S2_CRS, T, nodata=255)
    err = error_of(folder)
    assert err.path.endswith("mask.tif") and "found 2, 7" in err.problem


def test_mask_on_another_grid(tmp_path):
    folder = fs.make_site(tmp_path / "s", labels=None)
    shifted = fs.s2_transform((fs.ORIGIN[0] + 10, fs.ORIGIN[1]))
    fs.write_raster(folder / "mask.tif", np.zeros(fs.SHAPE, np.uint8), fs.S2_CRS, shifted)
    err = error_of(folder)
    assert err.path.endswith("mask.tif")
    assert "must be on the grid of the site's image (s2.tif or image.tif)" in err.problem


def test_no_labels(tmp_path):
    folder = fs.make_site(tmp_path / "s", labels=None)
    err = error_of(folder)
    assert err.path == str(folder) and "no inventory.* or mask.tif" in err.problem
    assert read_site(folder, require_label=False).label is None


@pytest.mark.parametrize(("text", "problem"), [("bands: [B2, B3\nscale: 1", "malformed YAML"),
                                               ("- just\n- a list", "must be a mapping"),
                                               ("scale: ten", "'scale' must be a number")])
def test_bad_site_yaml(tmp_path, text, problem):
    folder = fs.make_site(tmp_path / "s")
    (folder / "site.yaml").write_text(text)
    err = error_of(folder)
    assert err.path.endswith("site.yaml") and problem in err.problem


# ---------------------------------------------------------------- several sites


def test_list_and_read_sites(tmp_path):
    for name in ("japan", "china"):
        fs.make_site(tmp_path / name)
    (tmp_path / "notes").mkdir()
    assert list_sites(tmp_path) == ["china", "japan"]
    sites = read_sites(tmp_path, ["japan"])
    assert list(sites) == ["japan"] and sites["japan"].name == "japan"
    assert list(read_sites(tmp_path)) == ["china", "japan"]


def test_unknown_site_lists_the_known_ones(tmp_path):
    for name in ("a", "b", "c"):
        fs.make_site(tmp_path / name)
    with pytest.raises(InputError) as err:
        read_sites(tmp_path, ["x"])
    assert err.value.path == str(tmp_path) and err.value.problem == "unknown site 'x'; known sites: a, b, c"


def test_root_without_sites(tmp_path):
    with pytest.raises(InputError, match="no sites"):
        read_sites(tmp_path)


def test_bow_tie_expected_set_avoids_pixel_centres_on_edges():
    """Guard for the bow-tie test: no pixel centre lies within 0.05 px of an edge, so the rule is unambiguous."""
    ring = shapely.LineString([*fs.BOW_TIE_PX, fs.BOW_TIE_PX[0]])
    rows, cols = np.mgrid[0 : fs.SHAPE[0], 0 : fs.SHAPE[1]] + 0.5
    assert shapely.distance(ring, shapely.points(cols.ravel(), rows.ravel())).min() > 0.05


def test_several_inventories_are_ambiguous(tmp_path):
    folder = fs.make_site(tmp_path / "s")
    fs.write_vector(folder / "inventory.gpkg", [fs.pixel_polygon(T, fs.SQUARE_PX)], fs.S2_CRS, "GPKG")
    err = error_of(folder)
    assert err.path == str(folder) and "inventory.geojson, inventory.gpkg" in err.problem


def test_internal_mask_band_marks_pixels_invalid(tmp_path):
    folder = fs.make_site(tmp_path / "s", nodata=None)
    keep = np.full(fs.SHAPE, 255, np.uint8)
    keep[0, 0] = 0  # GDAL per-dataset mask (as COGs carry) instead of a nodata value
    with rasterio.open(folder / "s2.tif", "r+") as dst:
        dst.write_mask(keep)
    site = read_site(folder)
    assert not site.valid[0, 0] and site.valid.sum() == 16 * 20 - 1
