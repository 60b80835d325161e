"""Bad input to build_site: one line naming the file and the problem, and nothing written."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fake_sites as fs
import ingest_fixtures as fx
from slidemap.errors import InputError
from slidemap.ingest import build_site

Case = Callable[[Path, dict[str, Any]], tuple[dict[str, Any], Path | str, str]]
"""(tmp folder, made inputs) -> (build_site arguments, the path the error must name, a fragment of its message)."""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("good")
    safe = fx.write_safe(root / "safe")
    return {"safe": safe, "zip": fx.zip_safe(safe), "stac": fx.write_stac(root / "stac"),
            "folder": fx.write_band_folder(root / "bands"), "dem": fx.split_dem(root / "dem")}


def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / src.name
    shutil.copytree(src, dst)
    return dst


def _s2(path: Path | list[Path], made: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"s2": path if isinstance(path, list) else [path], "dem": made["dem"], **kw}


def not_a_product_folder(tmp, made):
    (tmp / "scene").mkdir()
    (tmp / "scene" / "notes.txt").write_text("no bands here")
    return _s2(tmp / "scene", made), tmp / "scene", "not a Sentinel-2 product: expected a Sentinel-2 L2A .SAFE"


def a_geotiff(tmp, made):
    path = fs.write_raster(tmp / "s2.tif", np.zeros((4, 8, 8), np.uint16), fx.UTM, fx.transform_at(fx.ORIGIN, 10))
    return _s2(path, made), path, "not a Sentinel-2 product"


def json_not_an_item(tmp, made):
    path = tmp / "catalog.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    return _s2(path, made), path, "not a Sentinel-2 product: a STAC item is a JSON 'Feature' with 'assets'"


def safe_missing_b08(tmp, made):
    safe = _copy(made["safe"], tmp)
    next(safe.rglob("*_B08_10m.jp2")).unlink()
    return _s2(safe, made), safe, "product is missing band B08: no file matches GRANULE/*/IMG_DATA/R10m/*_B08_10m.jp2"


def safe_missing_scl(tmp, made):
    safe = _copy(made["safe"], tmp)
    next(safe.rglob("*_SCL_20m.jp2")).unlink()
    return _s2(safe, made), safe, "product is missing the scene classification (SCL)"


def zip_missing_b04(tmp, made):
    safe = _copy(made["safe"], tmp)
    next(safe.rglob("*_B04_10m.jp2")).unlink()
    path = fx.zip_safe(safe)
    return _s2(path, made), path, "product is missing band B04"


def garbage_zip(tmp, made):
    path = tmp / "S2A_MSIL2A_20240830T022529_N0509_R046_T51QTF_20240830T061234.zip"
    path.write_bytes(b"PK\x03\x04 this is not really a zip file" * 10)
    return _s2(path, made), path, "corrupt zip"


def truncated_zip(tmp, made):
    path = tmp / made["zip"].name
    data = made["zip"].read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a download cut short: no central directory
    return _s2(path, made), path, "corrupt zip"


def zip_of_something_else(tmp, made):
    path = tmp / "photos.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("holiday/readme.txt", "hello")
    return _s2(path, made), path, "not a Sentinel-2 product: the zip holds no MTD_MSIL2A.xml"


def malformed_metadata(tmp, made):
    safe = _copy(made["safe"], tmp)
    (safe / "MTD_MSIL2A.xml").write_text("<n1:Level-2A_User_Product><unclosed>")
    return _s2(safe, made), safe / "MTD_MSIL2A.xml", "malformed XML"


def corrupt_band(tmp, made):
    safe = _copy(made["safe"], tmp)
    band = next(safe.rglob("*_B03_10m.jp2"))
    band.write_bytes(band.read_bytes()[:200])
    return _s2(safe, made), safe, "cannot read"


def stac_missing_nir(tmp, made):
    item = json.loads(made["stac"].read_text())
    del item["assets"]["nir"], item["assets"]["nir-jp2"]
    path = made["stac"].parent / "no_nir.json"
    path.write_text(json.dumps(item))
    return _s2(path, made), path, "STAC item has no asset for B8"


def stac_missing_scl(tmp, made):
    item = json.loads(made["stac"].read_text())
    del item["assets"]["scl"]
    path = made["stac"].parent / "no_scl.json"
    path.write_text(json.dumps(item))
    return _s2(path, made), path, "STAC item has no asset for SCL"


def band_folder_missing_b04(tmp, made):
    folder = _copy(made["folder"], tmp)
    next(folder.glob("*B04*")).unlink()
    return _s2(folder, made), folder, "band folder is missing B4"


def bounds_outside_the_product(tmp, made):
    # the message prints the product's own bounds, in lon/lat and in its CRS
    return (_s2(made["safe"], made, bounds=(10.0, 45.0, 10.1, 45.1)), made["safe"],
            "lie outside the product: " + made["safe"].name + ": (120.9943291, 23.4943935, 121.0062386, 23.50537714) "
            "[EPSG:4326] = (295200, 2599680, 296400, 2600880) [EPSG:32651]")


def bounds_reversed(tmp, made):
    return _s2(made["safe"], made, bounds=(121.01, 23.49, 121.0, 23.51)), "--bounds", "need W S E N with W < E"


def bounds_crs_unknown(tmp, made):
    return _s2(made["safe"], made, bounds=(0, 0, 1, 1), bounds_crs="EPSG:99999"), "--bounds-crs", "not a CRS"


def dem_does_not_cover(tmp, made):
    return ({"s2": [made["safe"]], "dem": [made["dem"][1]]}, made["dem"][1],
            "DEM tiles do not cover lon 120.99433 to 121.00000, lat 23.49439 to 23.50530 of the site")


def dates_differ(tmp, made):
    later = fx.write_safe(tmp, date="20240904T022541", origin=(fx.ORIGIN[0] + 1200, fx.ORIGIN[1]))
    return _s2([made["safe"], later], made), later, "acquired 2024-09-04, but"


def level_1c(tmp, made):
    l1c = fx.write_safe(tmp, level="L1C")
    return _s2(l1c, made), l1c, "is a Level-1C product (top-of-atmosphere reflectance"


def inventory_elsewhere(tmp, made):
    far = fs.write_geojson(tmp / "slides.geojson", [fs.pixel_polygon(fx.transform_at((10.0, 45.0), 0.001),
                                                                     ((0, 0), (5, 0), (5, 5), (0, 5)))])
    return _s2(made["safe"], made, inventory=far), far, "no landslide polygon intersects s2.tif"


def inventory_wrong_format(tmp, made):
    path = tmp / "slides.csv"
    path.write_text("id,wkt\n")
    return _s2(made["safe"], made, inventory=path), path, "inventory must be one of .geojson, .json, .shp, .gpkg"


CASES: list[Case] = [not_a_product_folder, a_geotiff, json_not_an_item, safe_missing_b08, safe_missing_scl,
                     zip_missing_b04, garbage_zip, truncated_zip, zip_of_something_else, malformed_metadata,
                     corrupt_band, stac_missing_nir, stac_missing_scl, band_folder_missing_b04,
                     bounds_outside_the_product, bounds_reversed, bounds_crs_unknown, dem_does_not_cover,
                     dates_differ, level_1c, inventory_elsewhere, inventory_wrong_format]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_written(tmp_path, made, case):
    kwargs, path, fragment = case(tmp_path, made)
    out = tmp_path / "out" / "site"
    with pytest.raises(InputError) as err:
        build_site(out=out, **kwargs)
    message = str(err.value)
    assert err.value.path == str(path), message
    assert fragment in message and "\n" not in message
    assert not (tmp_path / "out").exists()  # checked before anything is written, not even the parent folder
