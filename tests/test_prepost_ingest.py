"""`slidemap site --s2-pre` and `slidemap map --s2-pre`: pre-event products onto the site grid, greenest pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

import ingest_fixtures as fx
from slidemap.cli import main
from slidemap.data.sites.reader import read_site
from slidemap.errors import InputError
from slidemap.ingest import build_site
from slidemap.ingest.composite import greenest_pixel
from checkpoints import save_checkpoint, unet_config

POST_DATE = "20240830T022529"
GREEN = {"B2": 1500, "B3": 2000, "B4": 1200, "B8": 5000}  # NDVI 3800 / 6200 = 0.613
LESS_GREEN = {"B2": 1500, "B3": 2000, "B4": 1500, "B8": 4500}  # NDVI 3000 / 6000 = 0.5
A_CLOUD = (slice(80, 100), slice(80, 100))  # 10 m rows/cols of the cloud in the green product's SCL
CHANGE = ["B2", "B3", "B4", "B8", "dndvi", "rdndvi", "slope"]


def band_folder(folder: Path, date: str, base: dict[str, int], cloud: tuple[slice, slice] | None = None,
                origin: tuple[float, float] = fx.ORIGIN) -> Path:
    """A cloud-free band folder (DN / 10000 = reflectance), optionally with one SCL cloud (class 9) block."""
    fx.write_band_folder(folder, date=date, clouds=False, origin=origin, base=base)
    if cloud is not None:
        scl = np.full((60, 60), 4, np.uint8)
        scl[cloud[0].start // 2:cloud[0].stop // 2, cloud[1].start // 2:cloud[1].stop // 2] = 9
        fx.write_raster(folder / f"T51QTF_{date}_SCL_20m.tif", scl, fx.UTM, fx.transform_at(origin, 20.0))
    return folder


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | list[Path]]:
    root = tmp_path_factory.mktemp("prepost")
    return {"post": band_folder(root / "post", POST_DATE, fx.DN),
            "green": band_folder(root / "june", "20240601T022529", GREEN, cloud=A_CLOUD),
            "less_green": band_folder(root / "july", "20240701T022529", LESS_GREEN),
            "dem": fx.split_dem(root / "dem")}


def error_line(capsys, *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1, err
    return err.strip().split(": error: ", 1)[1]


# ---------------------------------------------------------------- the composite, by hand


def test_greenest_pixel_keeps_the_valid_observation_with_the_highest_ndvi():
    def obs(red: list[float], nir: list[float], valid: list[bool]) -> tuple[np.ndarray, np.ndarray]:
        b = np.zeros((4, 1, 4), np.float32)
        b[0] = np.arange(4) + 10 * len(red)  # a tag in B2 to see which observation won
        b[2], b[3] = red, nir
        return b, np.array([valid])

    first = obs([0.1, 0.1, 0.1, 0.1], [0.3, 0.3, 0.9, 0.3], [True, True, False, False])  # NDVI 0.5, 0.5, 0.8*, -
    second = obs([0.1, 0.2, 0.1, 0.1], [0.9, 0.2, 0.3, 0.2], [True, True, True, False])  # 0.8, 0.0, 0.5, -
    second[0][0] += 100
    bands, valid, winner = greenest_pixel(iter([first, second]))
    # pixel 0: 0.8 beats 0.5 -> second; 1: 0.5 beats 0.0 -> first; 2: first's 0.8 is invalid (a cloud) -> second;
    # 3: invalid in both -> invalid, NaN
    np.testing.assert_array_equal(winner[0], [1, 0, 1, -1])
    np.testing.assert_array_equal(valid[0], [True, True, True, False])
    np.testing.assert_allclose(bands[:, 0, :3], [[140, 41, 142], [0, 0, 0], [0.1, 0.1, 0.1], [0.9, 0.3, 0.3]],
                               rtol=1e-6)
    assert np.isnan(bands[:, 0, 3]).all()
    tie = obs([0.1] * 4, [0.3] * 4, [True] * 4)
    _, _, winner = greenest_pixel([tie, (tie[0].copy(), tie[1])])  # equal NDVI: the earlier one stays
    assert (winner == 0).all()


# ---------------------------------------------------------------- slidemap site --s2-pre


def test_site_with_two_pre_products_writes_their_greenest_pixel_composite(tmp_path, made, capsys):
    out = tmp_path / "event"
    code = main(["site", "--s2", str(made["post"]), "--s2-pre", str(made["green"]), str(made["less_green"]),
                 "--dem", *map(str, made["dem"]), "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["dem.tif", "s2.qml", "s2.tif", "s2_pre.qml", "s2_pre.tif",
                                                     "site.yaml"]
    assert "s2 pre   june (band_folder, 2024-06-01): the greenest pixel on 97.2% of the site" in text  # 1 - 400 / 14400
    assert "before   greenest pixel (maximum NDVI), 100.0% of the valid site observed" in text
    with rasterio.open(out / "s2_pre.tif") as src:
        assert src.dtypes == ("float32",) * 4 and np.isnan(src.nodata) and src.descriptions == ("B2", "B3", "B4", "B8")
        assert src.profile["tiled"] and src.compression.name == "deflate"
        assert src.crs.to_epsg() == 32651 and tuple(src.transform)[:6] == (10, 0, fx.ORIGIN[0], 0, -10, fx.ORIGIN[1])
        pre = src.read()
    expected_nir = np.full(fx.SHAPE, 0.5, np.float32)  # the greener June image...
    expected_nir[A_CLOUD] = 0.45  # ...but under its cloud the July one
    np.testing.assert_allclose(pre[3], expected_nir, rtol=1e-6)
    rows, cols = np.mgrid[0:120, 0:120]
    np.testing.assert_allclose(pre[0], (1500 + cols + 120 * rows) / 10000, rtol=1e-6)  # the fixture's B2 code
    meta = yaml.safe_load((out / "site.yaml").read_text())
    prov = meta["provenance"]["pre_event"]
    assert prov["composite"] == "greenest pixel (maximum NDVI)" and prov["coverage_of_valid_site"] == 1.0
    assert [p["product"] for p in prov["products"]] == ["june", "july"]
    assert [p["share_of_site"] for p in prov["products"]] == pytest.approx([1 - 400 / 14400, 400 / 14400])
    assert "before: june, july (2024-06-01, 2024-07-01) as a greenest-pixel composite" in meta["description"]
    site = read_site(out, require_label=False)
    np.testing.assert_allclose(site.bands_pre[3], expected_nir, rtol=1e-6)
    np.testing.assert_allclose(site.channel("dndvi")[0, 0], (4000 - 2500) / 6500 - 3800 / 6200, rtol=1e-5)


def test_pre_product_on_another_grid_is_reprojected_onto_the_site_grid(tmp_path, made):
    shifted = band_folder(tmp_path / "shifted", "20240601T022529", GREEN,
                          origin=(fx.ORIGIN[0] + 5.0, fx.ORIGIN[1] - 5.0))  # half a pixel off the site's lattice
    summary = build_site(made["post"], made["dem"], tmp_path / "event", s2_pre=[shifted])
    assert summary["pre_event"]["products"][0]["resampling"].startswith("reprojected from EPSG:32651: bilinear")
    with rasterio.open(tmp_path / "event" / "s2_pre.tif") as src:
        b2 = src.read(1)
    # site pixel (r, c) lies at pre pixel (r - 0.5, c - 0.5): bilinear of the linear B2 code 1500 + col + 120 row
    rows, cols = np.mgrid[1:120, 1:120]
    np.testing.assert_allclose(b2[1:, 1:], (1500 + (cols - 0.5) + 120 * (rows - 0.5)) / 10000, rtol=1e-6)


@pytest.mark.parametrize("date", ["20240901T022529", POST_DATE])
def test_pre_product_not_before_the_post_product_is_refused(tmp_path, made, capsys, date):
    late = band_folder(tmp_path / "late", date, GREEN)
    line = error_line(capsys, "site", "--s2", str(made["post"]), "--s2-pre", str(made["green"]), str(late),
                      "--dem", *map(str, made["dem"]), "--out", str(tmp_path / "x"))
    assert line == (f"{late}: acquired {date[:4]}-{date[4:6]}-{date[6:8]}, not before the post-event image post "
                    "(2024-08-30): a pre-event product must predate the event")
    assert not (tmp_path / "x").exists()


def test_pre_products_covering_too_little_of_the_site_are_refused(tmp_path, made):
    half = band_folder(tmp_path / "half", "20240601T022529", GREEN, origin=(fx.ORIGIN[0] + 600.0, fx.ORIGIN[1]))
    with pytest.raises(InputError) as err:
        build_site(made["post"], made["dem"], tmp_path / "x", s2_pre=[half])
    assert str(err.value).startswith(f"{half}: the pre-event image covers only 50.0% of the site's valid pixels")
    assert not (tmp_path / "x").exists()
    cloudy = band_folder(tmp_path / "cloudy", "20240601T022529", GREEN, cloud=(slice(0, 40), slice(0, 120)))
    # the cloud hides rows 0-39, the half product misses cols 0-59: 40 x 60 of 120 x 120 px seen by neither
    with pytest.raises(InputError, match=r"--s2-pre: the pre-event image covers only 83\.3% .* add pre-event"):
        build_site(made["post"], made["dem"], tmp_path / "x", s2_pre=[cloudy, half])


# ---------------------------------------------------------------- slidemap map --s2-pre


def test_map_with_a_change_model_needs_the_pre_event_image(tmp_path, made, capsys):
    ckpt = save_checkpoint(tmp_path / "change.ckpt", unet_config(len(CHANGE), 4), channels=CHANGE)
    common = ["map", "--ckpt", str(ckpt), "--dem", *map(str, made["dem"]), "--precision", "32"]
    line = error_line(capsys, *common, "--s2", str(made["post"]), "--out", str(tmp_path / "m"))
    assert line == (f"{ckpt}: the model reads dndvi, rdndvi, which need a pre-event image: give pre-event products "
                    "with --s2-pre PRODUCT...")
    assert main([*common, "--s2", str(made["post"]), "--s2-pre", str(made["less_green"]), "--out",
                 str(tmp_path / "m")]) == 0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "post_binary.qml", "post_binary.tif", "post_landslides.gpkg", "post_landslides.qml", "post_probability.qml",
        "post_probability.tif"]
    capsys.readouterr()
    scene = tmp_path / "scene"
    build_site(made["post"], made["dem"], scene)
    line = error_line(capsys, "map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(tmp_path / "n"))
    assert line.startswith(f"{scene / 's2_pre.tif'}: missing: scene 'scene' has no pre-event image but channels "
                           "dndvi, rdndvi need one")
    line = error_line(capsys, "map", "--ckpt", str(ckpt), "--scene", str(scene), "--s2-pre", str(made["green"]),
                      "--out", str(tmp_path / "n"))
    assert line == "--s2-pre: goes with --s2 PRODUCT...; a --scene folder brings its own s2_pre.tif"
