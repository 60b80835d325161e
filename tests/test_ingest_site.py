"""build_site and `slidemap site`: a site in the data contract, on the product's own grid, that reads back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from pyproj import Transformer

import fake_sites as fs
import ingest_fixtures as fx
from slidemap.cli import main
from slidemap.data.sites.reader import read_site
from slidemap.errors import InputError
from slidemap.ingest import build_site

# A UTM box inside the product, off its 10 m lattice: snapped outward it is cols 20-100, rows 20-100.
UTM_BOUNDS = (295_403.0, 2_599_876.0, 296_204.0, 2_600_677.0)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | list[Path]]:
    root = tmp_path_factory.mktemp("inputs")
    safe = fx.write_safe(root / "safe")
    t = fx.transform_at(fx.ORIGIN, 10.0)
    # a landslide over product pixels cols 50-59, rows 50-59 (100 pixel centres), saved in lon/lat
    square = fs.pixel_polygon(t, ((50.2, 50.2), (59.8, 50.2), (59.8, 59.8), (50.2, 59.8)))
    return {"safe": safe, "zip": fx.zip_safe(safe), "dem": fx.split_dem(root / "dem"),
            "inventory": fs.write_geojson(root / "slides.geojson", [fs.to_crs(square, fx.UTM, "EPSG:4326")])}


def test_site_on_the_product_grid_reads_back_with_labels(tmp_path, made):
    out = tmp_path / "taiwan"
    summary = build_site([made["zip"]], made["dem"], out, inventory=made["inventory"], bounds=UTM_BOUNDS,
                         bounds_crs="EPSG:32651")
    assert sorted(p.name for p in out.iterdir()) == ["dem.tif", "inventory.geojson", "s2.qml", "s2.tif", "site.yaml"]
    with rasterio.open(out / "s2.tif") as src:
        # pixel edges on the product's lattice: origin + 20 px, 81 x 81 px, transform otherwise the product's
        assert tuple(src.transform)[:6] == (10.0, 0.0, fx.ORIGIN[0] + 200, 0.0, -10.0, fx.ORIGIN[1] - 200)
        assert (src.height, src.width) == (81, 81) and src.crs.to_epsg() == 32651
        assert src.dtypes == ("float32",) * 4 and np.isnan(src.nodata)
        assert src.descriptions == ("B2", "B3", "B4", "B8")
        assert src.profile["tiled"] and src.compression.name == "deflate"
        b2 = src.read(1)
    # site pixel (0, 30) is product pixel (20, 50): DN 1500 + 50 + 120 * 20 = 3950 -> (3950 - 1000) / 10000
    assert b2[0, 30] == np.float32(0.295)
    assert np.isnan(b2[0:20, 0:20]).all()  # the cloud, product rows/cols 20-39
    site = read_site(out)
    assert site.shape == (81, 81) and site.landslide_count == 1
    assert site.label.sum() == 100 and site.label[30:40, 30:40].all()
    assert site.bands[0][~site.valid].max() == 0  # the reader zeroes invalid pixels
    assert summary["shape"] == [81, 81] and summary["landslides_in_site"] == 1
    assert summary["masked_share"] == pytest.approx((400 + 200) / 81**2)  # cloud 20 x 20, shadow 10 x 20


def test_lonlat_bounds_snap_outward_and_default_is_the_whole_product(tmp_path, made):
    lonlat = (120.998, 23.497, 121.003, 23.502)
    summary = build_site(made["safe"], made["dem"], tmp_path / "a", bounds=lonlat)
    t = summary["transform"]
    assert (t[2] - fx.ORIGIN[0]) % 10 == 0 and (fx.ORIGIN[1] - t[5]) % 10 == 0
    w, s, e, n = summary["bounds"]
    x, y = Transformer.from_crs("EPSG:4326", fx.UTM, always_xy=True).transform(
        [lonlat[0], lonlat[2], lonlat[0], lonlat[2]], [lonlat[1], lonlat[1], lonlat[3], lonlat[3]])
    assert w <= min(x) and e >= max(x) and s <= min(y) and n >= max(y)  # covers the asked box
    assert w > min(x) - 20 and e < max(x) + 20  # by less than 2 pixels more
    whole = build_site(made["safe"], made["dem"], tmp_path / "b")
    assert whole["shape"] == [120, 120] and whole["transform"][2] == fx.ORIGIN[0]
    assert whole["clipped_to_products"] is False


def test_site_yaml_records_provenance(tmp_path, made):
    build_site([made["safe"]], made["dem"], tmp_path / "s", mask_classes=[3, 8, 9])
    meta = yaml.safe_load((tmp_path / "s" / "site.yaml").read_text())
    assert meta["bands"] == ["B2", "B3", "B4", "B8"] and meta["scale"] == 1.0
    prov = meta["provenance"]
    (product,) = prov["products"]
    assert product["product"] == made["safe"].name and product["processing_baseline"] == "05.09"
    assert product["offsets"] == {"B2": -1000.0, "B3": -1000.0, "B4": -1000.0, "B8": -1000.0}
    assert product["quantification"] == 10000.0 and product["resampling"] == "native grid (no resampling)"
    assert prov["mask_classes"] == [3, 8, 9]
    assert prov["masked_share"] == pytest.approx((400 + 200) / 14400)  # cirrus (10) is kept this time
    assert prov["dem"]["files"] == [str(p) for p in made["dem"]]


def test_two_utm_zones_are_mosaicked_onto_the_zone_covering_most(tmp_path):
    # zone 51 product: lon ~120.000-120.012; zone 50 product: lon ~119.994-120.006; site lon 119.997-120.009
    east = fx.write_safe(tmp_path / "e", tile="T51QTF", origin=(193_560.0, 2_602_620.0), clouds=False,
                         gradient=False)
    west = fx.write_safe(tmp_path / "w", tile="T50QRL", crs="EPSG:32650", origin=(805_800.0, 2_602_620.0),
                         clouds=False, gradient=False, base={"B2": 1700, "B3": 2000, "B4": 2500, "B8": 4000})
    dem = fx.write_dem_tile(tmp_path / "dem.tif", 119.98, 23.48, 120.02, 23.52)
    summary = build_site([west, east], [dem], tmp_path / "site", bounds=(119.997, 23.496, 120.009, 23.503))
    assert summary["crs"] == "EPSG:32651" and summary["valid_share"] == 1.0
    assert [p["product"] for p in summary["products"]] == [east.name, west.name]  # lead first
    assert summary["products"][0]["resampling"] == "native grid (no resampling)"
    assert "bilinear" in summary["products"][1]["resampling"] and summary["products"][1]["share_of_site"] > 0
    site = read_site(tmp_path / "site", require_label=False)
    assert (site.transform.c - 193_560.0) % 10 == 0
    lon_left = Transformer.from_crs(fx.UTM, "EPSG:4326", always_xy=True).transform(
        site.transform.c + 5, site.transform.f - 5)[0]
    assert lon_left < 120.0  # the site's west edge lies in the zone 50 product
    # B2: 1500 -> 0.05 from the zone 51 product, 1700 -> 0.07 from the zone 50 one; nothing else
    values = set(np.round(site.bands[0].ravel(), 6))
    assert values == {np.float32(0.05).round(6), np.float32(0.07).round(6)}
    assert site.bands[0][:, 0].max() == pytest.approx(0.07) and site.bands[0][:, -1].max() == pytest.approx(0.05)


def test_adjacent_tiles_of_one_zone_are_copied_without_resampling(tmp_path, made):
    left = fx.write_band_folder(tmp_path / "left")
    right = fx.write_band_folder(tmp_path / "right", origin=(fx.ORIGIN[0] + 1200, fx.ORIGIN[1]))
    dem = fx.write_dem_tile(tmp_path / "dem.tif", 120.98, 23.48, 121.03, 23.52)
    summary = build_site([left, right], [dem], tmp_path / "site")
    assert summary["shape"] == [120, 240] and summary["transform"][2] == fx.ORIGIN[0]
    assert all(p["resampling"] == "native grid (no resampling)" for p in summary["products"])
    with rasterio.open(tmp_path / "site" / "s2.tif") as src:
        b2 = src.read(1)
    assert b2[60, 50] == np.float32((1500 + 50 + 120 * 60) / 10000)
    assert b2[60, 170] == np.float32((1500 + 50 + 120 * 60) / 10000)  # the same pixel of the right tile


def test_mixed_dates_are_refused_unless_allowed(tmp_path, made):
    later = fx.write_safe(tmp_path, date="20240904T022541", origin=(fx.ORIGIN[0] + 1200, fx.ORIGIN[1]))
    with pytest.raises(InputError, match=r"acquired 2024-09-04, but .* 2024-08-30.*--allow-mixed-dates"):
        build_site([made["safe"], later], made["dem"], tmp_path / "site")
    assert not (tmp_path / "site").exists()
    dem = fx.write_dem_tile(tmp_path / "dem.tif", 120.98, 23.48, 121.03, 23.52)
    summary = build_site([made["safe"], later], [dem], tmp_path / "site", allow_mixed_dates=True)
    assert summary["shape"] == [120, 240]


def test_out_replaces_a_site_but_not_other_folders(tmp_path, made):
    out = tmp_path / "site"
    build_site(made["safe"], made["dem"], out, bounds=UTM_BOUNDS, bounds_crs="EPSG:32651")
    build_site(made["safe"], made["dem"], out)  # an earlier site is replaced whole
    assert read_site(out, require_label=False).shape == (120, 120)
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a site folder"):
        build_site(made["safe"], made["dem"], precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_cli_site_json(tmp_path, made, capsys):
    out = tmp_path / "cli_site"
    code = main(["site", "--s2", str(made["zip"]), "--dem", *map(str, made["dem"]), "--inventory",
                 str(made["inventory"]), "--mask-classes", "9", "--out", str(out), "--json"])
    printed = capsys.readouterr().out
    assert code == 0
    summary = json.loads(printed)
    assert summary["site"] == str(out) and summary["mask_classes"] == [9]
    assert summary["masked_share"] == pytest.approx(400 / 14400)
    assert summary["files"] == ["s2.tif", "dem.tif", "inventory.geojson", "site.yaml"]
    assert read_site(out).landslide_count == 1


def test_cli_site_text_and_error_line(tmp_path, made, capsys):
    code = main(["site", "--s2", str(made["safe"]), "--dem", str(made["dem"][0]), "--out", str(tmp_path / "x")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"slidemap site: error: {made['dem'][0]}: DEM tiles do not cover lon 121.00000 to")
    assert not (tmp_path / "x").exists()
    assert main(["site", "--s2", str(made["safe"]), "--dem", *map(str, made["dem"]), "--out",
                 str(tmp_path / "y")]) == 0
    text = capsys.readouterr().out
    assert text.startswith(str(tmp_path / "y")) and "baseline 05.09" in text and "4.9% masked" in text
