"""Product readers: SAFE folder and zip (JP2 via /vsizip/), STAC items, band folders, L1C; the SCL cloud mask.

Expected reflectances are computed here from the DNs the fixtures write: (DN + BOA_ADD_OFFSET) / 10000.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

import ingest_fixtures as fx
from slidemap.errors import InputError
from slidemap.ingest import open_product, read_window
from slidemap.ingest.scl import DEFAULT_MASK_CLASSES, parse_mask_classes

FULL = Window(0, 0, fx.SHAPE[1], fx.SHAPE[0])
ROWS, COLS = np.mgrid[0:fx.SHAPE[0], 0:fx.SHAPE[1]]
CLOUD = (slice(20, 40), slice(20, 40))     # SCL 9, 400 px
SHADOW = (slice(60, 70), slice(80, 100))   # SCL 3, 200 px
CIRRUS = (slice(100, 110), slice(0, 10))   # SCL 10, 100 px
WATER = (slice(80, 90), slice(40, 60))     # SCL 6, kept
NODATA = (slice(0, 10), slice(110, 120))   # DN 0 and SCL 0, 100 px


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("products")
    safe = fx.write_safe(root / "new")
    (root / "zipped").mkdir()
    return {
        "safe": safe,
        "zip": fx.zip_safe(safe, root / "zipped" / (safe.stem + ".zip")),
        "old": fx.write_safe(root / "old", baseline="03.01", date="20210715T022549"),
        "band_ids": fx.write_safe(root / "ids", offsets={i: -1000 + 10 * i for i in range(13)}),
        "stac10": fx.write_stac(root / "stac10"),
        "stac11": fx.write_stac(root / "stac11", style="1.1"),
        "folder": fx.write_band_folder(root / "bands"),
        "l1c": fx.write_safe(root / "l1c", level="L1C"),
    }


def valid_outside_masks() -> np.ndarray:
    expected = np.ones(fx.SHAPE, bool)
    for block in (CLOUD, SHADOW, CIRRUS, NODATA):
        expected[block] = False
    return expected


def test_safe_reflectance_is_dn_plus_offset_over_quantification(made):
    product = open_product(made["safe"])
    refl = read_window(product, FULL, DEFAULT_MASK_CLASSES)
    assert product.kind == "safe" and product.level == "L2A" and product.date == "2024-08-30"
    assert product.provenance["processing_baseline"] == "05.09"
    assert product.provenance["offsets"] == {"B2": -1000.0, "B3": -1000.0, "B4": -1000.0, "B8": -1000.0}
    assert product.provenance["spacecraft"] == "Sentinel-2B"
    # DN 1500 at pixel (0, 0) with offset -1000 and quantification 10000 -> 0.05, exactly in float32
    assert refl.bands[0, 0, 0] == np.float32(0.05)
    ok = refl.valid
    expected_b2 = ((1500 + COLS + 120 * ROWS - 1000) / 10000).astype(np.float32)
    np.testing.assert_array_equal(refl.bands[0][ok], expected_b2[ok])
    for k, dn in enumerate((2000, 2500, 4000), start=1):  # B3, B4, B8 -> 0.1, 0.15, 0.3
        assert np.all(refl.bands[k][ok] == np.float32((dn - 1000) / 10000))
    assert refl.bands.dtype == np.float32 and np.isnan(refl.bands[:, ~ok]).all()
    assert refl.grid.transform == fx.transform_at(fx.ORIGIN, 10.0) and refl.grid.crs.to_epsg() == 32651


def test_offsets_follow_band_id(made):
    # band_id 1, 2, 3, 7 are B2, B3, B4, B8: offsets -990, -980, -970, -930 in this product
    refl = read_window(open_product(made["band_ids"]), FULL, DEFAULT_MASK_CLASSES)
    assert refl.bands[0, 0, 0] == np.float32((1500 - 990) / 10000)
    assert refl.bands[1, 0, 0] == np.float32((2000 - 980) / 10000)
    assert refl.bands[2, 0, 0] == np.float32((2500 - 970) / 10000)
    assert refl.bands[3, 0, 0] == np.float32((4000 - 930) / 10000)


def test_baseline_before_4_has_no_offset(made):
    product = open_product(made["old"])
    refl = read_window(product, FULL, DEFAULT_MASK_CLASSES)
    assert product.provenance["processing_baseline"] == "03.01" and product.date == "2021-07-15"
    assert set(product.provenance["offsets"].values()) == {0.0}
    assert refl.bands[0, 0, 0] == np.float32(0.15)  # 1500 / 10000
    assert refl.bands[3, 0, 0] == np.float32(0.4)


def test_zip_is_read_in_place_and_equals_the_folder(made):
    folder_of_zip = made["zip"].parent
    before = sorted(folder_of_zip.rglob("*"))
    product = open_product(made["zip"])
    assert all(b.href.startswith("/vsizip/") for b in product.bands.values())
    assert product.scl is not None and product.scl.href.startswith("/vsizip/")
    from_zip = read_window(product, FULL, DEFAULT_MASK_CLASSES)
    from_folder = read_window(open_product(made["safe"]), FULL, DEFAULT_MASK_CLASSES)
    np.testing.assert_array_equal(from_zip.bands, from_folder.bands)
    np.testing.assert_array_equal(from_zip.valid, from_folder.valid)
    assert sorted(folder_of_zip.rglob("*")) == before  # nothing unpacked


def test_scl_masks_cloud_shadow_cirrus_and_keeps_water(made):
    refl = read_window(open_product(made["safe"]), FULL, DEFAULT_MASK_CLASSES)
    np.testing.assert_array_equal(refl.valid, valid_outside_masks())
    assert refl.masked.sum() == 400 + 200 + 100  # DN-0 pixels are no-data, not cloud
    assert refl.masked[CLOUD].all() and refl.masked[SHADOW].all() and refl.masked[CIRRUS].all()
    assert refl.valid[WATER].all()
    assert refl.provenance["masked_share"] == pytest.approx(700 / 14400)


def test_mask_classes_choose_what_is_masked(made):
    product = open_product(made["safe"])
    only_cloud = read_window(product, FULL, (9,))
    assert only_cloud.masked.sum() == 400 and only_cloud.valid[SHADOW].all()
    nothing = read_window(product, FULL, ())
    assert not nothing.masked.any()
    assert nothing.valid.sum() == 14400 - 100  # DN 0 stays no-data without any SCL class


def test_parse_mask_classes():
    assert parse_mask_classes(["3,8", "9"]) == (3, 8, 9)
    assert parse_mask_classes(None) == DEFAULT_MASK_CLASSES == (0, 1, 3, 8, 9, 10)
    assert parse_mask_classes([]) == ()
    for bad in (["12"], ["cloud"]):
        with pytest.raises(InputError, match="not an SCL class"):
            parse_mask_classes(bad)


def test_window_read_matches_the_whole(made):
    product = open_product(made["zip"])
    part = read_window(product, Window(10, 15, 40, 30), DEFAULT_MASK_CLASSES)  # cols 10-49, rows 15-44
    assert part.bands.shape == (4, 30, 40)
    assert part.grid.transform.c == fx.ORIGIN[0] + 100 and part.grid.transform.f == fx.ORIGIN[1] - 150
    assert part.bands[0, 0, 0] == np.float32((1500 + 10 + 120 * 15 - 1000) / 10000)
    assert part.masked.sum() == 400 and part.masked[5:25, 10:30].all()  # the whole cloud, rows 20-39, cols 20-39
    whole = read_window(product, FULL, DEFAULT_MASK_CLASSES)
    np.testing.assert_array_equal(part.bands, whole.bands[:, 15:45, 10:50])


@pytest.mark.parametrize("key", ["stac10", "stac11"])
def test_stac_scale_offset_nodata_and_assets(made, key):
    product = open_product(made[key])
    refl = read_window(product, FULL, DEFAULT_MASK_CLASSES)
    assert product.kind == "stac" and product.date == "2024-08-30" and product.level == "L2A"
    assert product.bands["B2"].href.endswith("B02.tif")  # the COG, not the jp2 copy of the same band
    assert product.provenance["bands"]["B8"] == {"asset": "nir", "scale": 0.0001, "offset": -0.1, "nodata": 0.0}
    # DN * 0.0001 - 0.1
    expected_b2 = (1500 + COLS + 120 * ROWS) * 0.0001 - 0.1
    np.testing.assert_allclose(refl.bands[0][refl.valid], expected_b2[refl.valid], rtol=0, atol=1e-7)
    np.testing.assert_allclose(refl.bands[3][refl.valid], 0.3, atol=1e-7)
    np.testing.assert_array_equal(refl.valid, valid_outside_masks())


def test_band_folder_takes_integer_dn_over_10000(made):
    product = open_product(made["folder"])
    refl = read_window(product, FULL, DEFAULT_MASK_CLASSES)
    assert product.kind == "band_folder" and product.date == "2024-08-30"
    assert refl.bands[0, 0, 0] == np.float32(0.15) and refl.bands[3, 0, 0] == np.float32(0.4)
    np.testing.assert_array_equal(refl.valid, valid_outside_masks())


def test_l1c_is_refused_unless_allowed(made):
    with pytest.raises(InputError, match="Level-1C.*--allow-l1c") as err:
        open_product(made["l1c"])
    assert err.value.path == str(made["l1c"]) and "\n" not in str(err.value)
    product = open_product(made["l1c"], allow_l1c=True)
    assert product.level == "L1C" and product.scl is None
    refl = read_window(product, FULL, DEFAULT_MASK_CLASSES)
    assert refl.bands[0, 0, 0] == np.float32(0.05)  # (DN + RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE
    assert not refl.masked.any() and refl.valid.sum() == 14400 - 100
