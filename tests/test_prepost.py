"""Before and after: the pre-event image of a site, the change channels, the input sets and the rdNDVI rule."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

import fake_sites as fs
from slidemap.cli import main
from slidemap.data.loading.scene import SceneStrips
from slidemap.data.sites.indices import dndvi, ndvi, rdndvi
from slidemap.data.sites.reader import read_site
from slidemap.data.sites.site import Site
from slidemap.data.tiling.split import Block, split_sites
from slidemap.errors import InputError
from slidemap.evaluation.baseline import ChangeRuleThresholds, fit_rule, run_baseline, score_rule

CONF = str(Path(__file__).resolve().parents[1] / "conf")
PRE_DN = (400, 500, 300, 4000)  # B2, B3, B4, B8 of the default pre-event image: NDVI (4000-300)/4300
POST_NDVI = (3000 - 700) / (3000 + 700)  # fake_sites.DN: B4 700, B8 3000
PRE_NDVI = (4000 - 300) / (4000 + 300)


def write_pre(folder: Path, bands: np.ndarray, crs: str = fs.S2_CRS, transform: Affine | None = None,
              nodata: float | None = 0, descriptions: tuple[str, ...] | None = ("B2", "B3", "B4", "B8")) -> Path:
    return fs.write_raster(folder / "s2_pre.tif", bands, crs, transform or fs.s2_transform(), nodata=nodata,
                           descriptions=descriptions)


def utm_plane(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A reflectance linear in UTM metres: bilinear resampling reproduces it at any point, so it is the answer."""
    return 0.30 + 2e-4 * (x - fs.ORIGIN[0]) - 1e-4 * (y - fs.ORIGIN[1])


def write_pre_lonlat(folder: Path, res: float = 5e-5, hole: tuple[slice, slice] | None = None) -> Path:
    """A float32 pre-event image in EPSG:4326 (~5 m pixels) around the site: B8 = ``utm_plane``, other bands fixed."""
    t = fs.s2_transform()
    left, top = fs.apply(t, 0, 0)
    right, bottom = fs.apply(t, fs.SHAPE[1], fs.SHAPE[0])
    w, s, e, n = transform_bounds(fs.S2_CRS, "EPSG:4326", left, bottom, right, top, densify_pts=21)
    w, s, e, n = w - 6 * res, s - 6 * res, e + 6 * res, n + 6 * res
    width, height = int(np.ceil((e - w) / res)), int(np.ceil((n - s) / res))
    lt = Affine(res, 0.0, w, 0.0, -res, n)
    lon, lat = fs.apply(lt, *np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5))
    x, y = Transformer.from_crs("EPSG:4326", fs.S2_CRS, always_xy=True).transform(lon, lat)
    bands = np.stack([np.full((height, width), v, np.float32) for v in (0.04, 0.05, 0.03)]
                     + [utm_plane(np.asarray(x), np.asarray(y)).astype(np.float32)])
    if hole is not None:
        bands[(slice(None), *hole)] = np.nan
    return write_pre(folder, bands, "EPSG:4326", lt, nodata=np.nan)


def site_centres() -> tuple[np.ndarray, np.ndarray]:
    """UTM x, y of the fake site's pixel centres."""
    cols, rows = np.meshgrid(np.arange(fs.SHAPE[1]) + 0.5, np.arange(fs.SHAPE[0]) + 0.5)
    return fs.apply(fs.s2_transform(), cols, rows)


def one_line_error(call) -> str:
    with pytest.raises(InputError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------- the indices, by hand


def test_rdndvi_formula_against_hand_computed_values():
    post = np.array([0.2, 0.6, 0.0, -0.3, 0.005, 0.5], np.float32)
    pre = np.array([0.7, 0.3, 0.0, 0.2, 0.005, 0.5], np.float32)
    expected = [
        -0.5 / np.sqrt(0.9) * 100,  # forest to bare: -52.7046
        0.3 / np.sqrt(0.9) * 100,  # regrowth: +31.6228
        0.0,  # bare both times: the sum 0 is clamped to 0.01, the difference is 0
        -0.5 / 0.1 * 100,  # the sum -0.1 is clamped to 0.01 (sqrt 0.1): the loss keeps its sign, -500
        0.0,  # the sum is exactly the clamp
        0.0,  # no change
    ]
    np.testing.assert_allclose(rdndvi(post, pre), expected, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(dndvi(post, pre), [-0.5, 0.3, 0.0, -0.5, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(ndvi(np.array([0.1, 0.0]), np.array([0.3, 0.0])), [0.5, 0.0], rtol=1e-6)  # 0/0 -> 0


def test_site_change_channels_by_hand():
    shape = (2, 3)
    bands = np.zeros((4, *shape), np.float32)
    bands[2], bands[3] = 0.1, 0.3  # post NDVI 0.2 / 0.4 = 0.5
    pre = np.zeros((4, *shape), np.float32)
    pre[0], pre[2], pre[3] = 0.02, 0.05, 0.45  # pre NDVI 0.4 / 0.5 = 0.8
    valid = np.ones(shape, bool)
    valid[0, 0] = False
    site = Site(name="s", bands=bands, dem=np.zeros(shape, np.float32), slope=np.zeros(shape, np.float32),
                label=None, valid=valid, transform=fs.s2_transform(), crs=CRS.from_string(fs.S2_CRS), bands_pre=pre)
    np.testing.assert_allclose(site.channel("ndvi_pre")[1, 1], 0.8, rtol=1e-6)
    np.testing.assert_allclose(site.channel("dndvi")[1, 1], -0.3, rtol=1e-6)
    np.testing.assert_allclose(site.channel("rdndvi")[1, 1], -0.3 / np.sqrt(1.3) * 100, rtol=1e-5)  # -26.3117
    np.testing.assert_array_equal(site.channel("B2_pre"), pre[0])
    for name in ("ndvi_pre", "dndvi", "rdndvi"):
        assert site.channel(name)[0, 0] == 0.0 and site.channel(name).dtype == np.float32  # invalid pixels are 0
    assert site.stack(("B2", "B8_pre", "rdndvi", "slope")).shape == (4, *shape)


def test_change_channels_of_a_site_without_pre_image_name_it():
    site = Site(name="japan", bands=np.zeros((4, 2, 2), np.float32), dem=np.zeros((2, 2), np.float32),
                slope=np.zeros((2, 2), np.float32), label=None, valid=np.ones((2, 2), bool),
                transform=fs.s2_transform(), crs=CRS.from_string(fs.S2_CRS), meta={"path": "/data/japan"})
    for name in ("B4_pre", "ndvi_pre", "dndvi", "rdndvi"):
        text = one_line_error(lambda: site.channel(name))
        assert text.startswith("/data/japan: site 'japan' has no pre-event image (s2_pre.tif)") and name in text
    assert "has no pre-event image" in one_line_error(lambda: site.channel("B5_pre"))  # rededge071: a real band
    with pytest.raises(KeyError):
        site.channel("B13_pre")


# ---------------------------------------------------------------- the site contract


@pytest.mark.parametrize("dtype,scale", [(np.uint16, 1.0), (np.float32, 1e-4)])
def test_pre_image_on_the_s2_grid_is_copied_and_its_nodata_joins_the_valid_mask(tmp_path, dtype, scale):
    folder = fs.make_site(tmp_path / "a")
    pre = (fs.constant_bands(PRE_DN) * scale).astype(dtype)  # DNs, or reflectance already as floats
    pre[:, 2:4, 5:9] = 0  # nodata: 8 pixels
    write_pre(folder, pre)
    site = read_site(folder)
    assert site.bands_pre is not None and site.bands_pre.dtype == np.float32
    expected_valid = np.ones(fs.SHAPE, bool)
    expected_valid[2:4, 5:9] = False
    np.testing.assert_array_equal(site.valid, expected_valid)
    np.testing.assert_allclose(site.bands_pre[:, 0, 0], [0.04, 0.05, 0.03, 0.40], rtol=1e-6)
    assert (site.bands_pre[:, ~expected_valid] == 0).all() and (site.bands[:, ~expected_valid] == 0).all()
    assert site.meta["pre_event_coverage"] == pytest.approx(1 - 8 / 320)
    np.testing.assert_allclose(site.channel("rdndvi")[0, 0],
                               (POST_NDVI - PRE_NDVI) / np.sqrt(POST_NDVI + PRE_NDVI) * 100, rtol=1e-5)


def test_pre_image_in_another_crs_is_resampled_onto_the_post_grid(tmp_path):
    folder = fs.make_site(tmp_path / "a")
    write_pre_lonlat(folder)
    site = read_site(folder)
    assert site.valid.all()
    np.testing.assert_allclose(site.bands_pre[:3, 5, 7], [0.04, 0.05, 0.03], rtol=1e-6)
    np.testing.assert_allclose(site.bands_pre[3], utm_plane(*site_centres()), rtol=0, atol=2e-6)


def test_pre_image_bands_are_found_by_name_in_any_order(tmp_path):
    folder = fs.make_site(tmp_path / "a")
    write_pre(folder, fs.constant_bands(PRE_DN[::-1]), descriptions=("B08", "B04", "B03", "B02"))
    np.testing.assert_allclose(read_site(folder).bands_pre[:, 3, 3], [0.04, 0.05, 0.03, 0.40], rtol=1e-6)


@pytest.mark.parametrize("bands,descriptions,message", [
    ((400, 500, 300, 1000), ("B2", "B3", "B4", "B5"),
     "band nir (B8) not found (its band descriptions give [blue (B2), green (B3), red (B4), rededge071 (B5)]); "
     "pre- and post-event images must both hold blue (B2), green (B3), red (B4), nir (B8)"),
    ((400, 500, 300), None, "3 unnamed band(s) but the site's image has 4: pre- and post-event images must hold the "
                            "same bands"),
])
def test_pre_and_post_of_different_band_sets_are_refused(tmp_path, bands, descriptions, message):
    folder = fs.make_site(tmp_path / "a")
    path = write_pre(folder, fs.constant_bands(bands), descriptions=descriptions)
    assert one_line_error(lambda: read_site(folder)).startswith(f"{path}: {message}")


def test_pre_image_covering_too_little_of_the_site_is_refused(tmp_path):
    folder = fs.make_site(tmp_path / "a")
    half = fs.constant_bands(PRE_DN, shape=(fs.SHAPE[0], 10))  # cols 0-9 of 20: half the site
    path = write_pre(folder, half)
    text = one_line_error(lambda: read_site(folder))
    assert text.startswith(f"{path}: covers only 50.0% of the site's valid s2.tif pixels") and "at least 95%" in text


def test_scene_strips_read_the_pre_image_exactly_as_the_site_reader(tmp_path):
    folder = fs.make_site(tmp_path / "a")
    write_pre_lonlat(folder, hole=(slice(10, 16), slice(12, 20)))  # a no-data patch inside the site
    site = read_site(folder)
    assert 0 < (~site.valid).sum() < 30
    scene = SceneStrips(folder, strip_rows=3)  # strip edges fall everywhere
    assert scene.with_pre
    for r0 in range(0, fs.SHAPE[0], 3):
        r1 = min(fs.SHAPE[0], r0 + 3)
        strip = scene.read(r0, r1)
        np.testing.assert_array_equal(strip.valid, site.valid[r0:r1])
        np.testing.assert_allclose(strip.bands_pre, site.bands_pre[:, r0:r1], rtol=0, atol=1e-7)
        for name in ("B8_pre", "ndvi_pre", "dndvi", "rdndvi"):
            np.testing.assert_allclose(strip.channel(name), site.channel(name)[r0:r1], rtol=1e-6, atol=1e-5)


def test_scene_strips_read_the_pre_image_only_for_models_that_need_it(tmp_path):
    folder = fs.make_site(tmp_path / "event", labels=None)
    change = ("B2", "B3", "B4", "B8", "dndvi", "rdndvi", "slope")
    text = one_line_error(lambda: SceneStrips(folder, channels=change))
    assert text.startswith(f"{folder / 's2_pre.tif'}: missing: scene 'event' has no pre-event image but channels "
                           "dndvi, rdndvi need one")
    pre = fs.constant_bands(PRE_DN)
    pre[:, :4] = 0  # a cloud in the pre-event image over rows 0-3
    write_pre(folder, pre)
    post_only = SceneStrips(folder, channels=("B2", "B3", "B4", "B8", "slope"))
    assert not post_only.with_pre and post_only.read(0, 16).valid.all()  # its clouds do not hole a post map
    strips = SceneStrips(folder, channels=change)
    assert strips.with_pre and not strips.read(0, 16).valid[:4].any() and strips.read(0, 16).valid[4:].all()
    write_pre(folder, fs.constant_bands(PRE_DN, shape=(fs.SHAPE[0], 10)))
    text = one_line_error(lambda: SceneStrips(folder, channels=change))
    assert "covers only 50.0% of the scene's extent" in text


# ---------------------------------------------------------------- input sets, through the configs and every model


@pytest.mark.parametrize("inputs,count", [("post", 5), ("prepost", 9), ("change", 7)])
def test_input_sets_set_the_channel_count_of_every_model(tmp_path, inputs, count):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        for model in ("unet", "resunet", "smp_unet"):
            cfg = compose("train", overrides=[f"inputs={inputs}", f"model={model}", "data=scenes",
                                              f"data.root={tmp_path}", "logger=none"])
            datamodule = instantiate(cfg.data)
            assert cfg.inputs.name == inputs and datamodule.in_channels == count == len(cfg.data.channels)
            net = instantiate(cfg.model.net, in_channels=datamodule.in_channels).eval()
            with torch.no_grad():
                out = net(torch.zeros(1, count, 32, 32))
            assert tuple(out.shape) == (1, 1, 32, 32), model
    if inputs == "post":
        assert list(cfg.data.channels) == ["blue", "green", "red", "nir", "slope"]  # the paper's B2, B3, B4, B8


def test_change_inputs_on_a_site_without_pre_image_name_the_site(tmp_path):
    from slidemap.data.loading.datamodule import SiteDataModule

    root = tmp_path / "sites"
    fs.make_site(root / "a")
    write_pre(fs.make_site(root / "b"), fs.constant_bands(PRE_DN))
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["inputs=change", "data=scenes", f"data.root={root}"])
    dm = SiteDataModule(root=str(root), window=8, channels=list(cfg.data.channels))
    text = one_line_error(dm.setup)
    assert text.startswith(f"{root / 'a'}: site 'a' has no pre-event image (s2_pre.tif)") and "inputs=post" in text
    SiteDataModule(root=str(root), sites=["b"], window=8, channels=list(cfg.data.channels)).setup()


# ---------------------------------------------------------------- the rdNDVI rule


def layered(name: str, layers: list[tuple[float, float, float, int]], cols: int = 50, rows: int = 10) -> Site:
    """Horizontal bands of rows, each (post NDVI, pre NDVI, slope, label): red 0.1, NIR from the NDVI."""
    h = rows * len(layers)
    bands = np.zeros((4, h, cols), np.float32)
    pre = np.zeros((4, h, cols), np.float32)
    slope = np.zeros((h, cols), np.float32)
    label = np.zeros((h, cols), np.uint8)
    for k, (post_ndvi, pre_ndvi, s, lab) in enumerate(layers):
        r = slice(k * rows, (k + 1) * rows)
        for arr, v in ((bands, post_ndvi), (pre, pre_ndvi)):  # NDVI v: NIR = red (1 + v) / (1 - v)
            arr[2, r], arr[3, r] = 0.1, 0.1 * (1 + v) / (1 - v)
        slope[r], label[r] = s, lab
    return Site(name=name, bands=bands, dem=np.zeros((h, cols), np.float32), slope=slope, label=label,
                valid=np.ones((h, cols), bool), transform=fs.s2_transform(), crs=CRS.from_string(fs.S2_CRS),
                meta={"path": f"/sites/{name}"}, bands_pre=pre)


# rdNDVI of each cover: (post - pre) / sqrt(post + pre) * 100
LANDSLIDE = (0.1, 0.8, 30.5, 1)  # -0.7 / sqrt(0.9) = -73.79
THINNED = (0.26, 0.8, 40.0, 0)  # -0.54 / sqrt(1.06) = -52.45: some loss, not a landslide
HARVEST = (0.1, 0.8, 29.5, 0)  # a landslide's loss, on gentler ground
RIVER_BED = (0.1, 0.1, 35.0, 0)  # bare both times: 0, but as bare as a landslide and steep


def test_rdndvi_rule_finds_the_separating_thresholds_the_ndvi_rule_cannot():
    site = layered("a", [LANDSLIDE, THINNED, HARVEST, RIVER_BED])
    whole = Block(0, 0, *site.shape)
    rule = fit_rule([(site, whole)], "rdndvi")
    # rdNDVI < t separates for t in (-73.79, -52.45]; np.argmax keeps the first maximum: the first edge above -73.79
    # is -72. Slope >= s separates only for s in (29.5, 30.5]: 30.
    assert rule == ChangeRuleThresholds(rdndvi_max=-72.0, slope_min=30.0)
    assert score_rule(rule, site, whole) == {"tp": 500, "fp": 0, "fn": 0, "tn": 1500}
    ndvi_rule = fit_rule([(site, whole)], "ndvi")  # the river bed is as bare and as steep as the landslide
    counts = score_rule(ndvi_rule, site, whole)
    assert counts["fp"] + counts["fn"] > 0


def test_run_baseline_rdndvi_json_and_sites_without_pre_image():
    sites = {"a": layered("a", [LANDSLIDE, THINNED, HARVEST, RIVER_BED]),
             "b": layered("b", [RIVER_BED, LANDSLIDE, HARVEST, THINNED])}
    result = run_baseline(sites, split_sites(sites), {"all": ["a", "b"]}, method="rdndvi")
    assert set(result) == {"scenarios", "thresholds"} and set(result["thresholds"]["all"]) == {"rdndvi_max",
                                                                                               "slope_min"}
    assert run_baseline(sites, split_sites(sites), {"all": ["a"]})["thresholds"]["all"].keys() == {"ndvi_max",
                                                                                                  "slope_min"}
    bare = {**sites, "c": Site(**{**sites["a"].__dict__, "name": "c", "meta": {"path": "/sites/c"},
                                  "bands_pre": None})}
    text = one_line_error(lambda: run_baseline(bare, split_sites(bare), {"all": ["a"]}, method="rdndvi"))
    assert text.startswith("/sites/c: site 'c' has no pre-event image (s2_pre.tif): the rdndvi rule needs one")


def test_cli_baseline_method_rdndvi(capsys, tmp_path):
    root = tmp_path / "sites"
    for name in ("a", "b"):
        write_pre(fs.make_site(root / name), fs.constant_bands(PRE_DN))
    assert main(["baseline", str(root), "--method", "rdndvi", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert all(set(t) == {"rdndvi_max", "slope_min"} for t in result["thresholds"].values())
    assert main(["baseline", str(root), "--method", "rdndvi"]) == 0
    assert "rdNDVI<" in capsys.readouterr().out
    os.remove(root / "b" / "s2_pre.tif")
    assert main(["baseline", str(root), "--method", "rdndvi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"slidemap baseline: error: {root / 'b'}: site 'b' has no pre-event image (s2_pre.tif): the "
                   "rdndvi rule needs one; add it (slidemap site --s2-pre PRODUCT...) or use --method ndvi")


def test_describe_reports_the_pre_event_image():
    from slidemap.reporting.describe import describe_sites, format_description

    with_pre = layered("a", [LANDSLIDE, RIVER_BED], rows=40, cols=40)  # half landslide (dNDVI -0.7), half 0
    plain = Site(name="b", bands=with_pre.bands, dem=with_pre.dem, slope=with_pre.slope, label=with_pre.label,
                 valid=with_pre.valid, transform=with_pre.transform, crs=with_pre.crs, meta={})
    desc = describe_sites({"a": with_pre, "b": plain})
    pre = desc["sites"]["a"]["pre_event"]
    assert pre["mean_ndvi_pre"] == pytest.approx(0.45, abs=1e-5) and pre["mean_ndvi_post"] == pytest.approx(0.1)
    assert pre["mean_dndvi_landslides"] == pytest.approx(-0.7, abs=1e-5) and pre["mean_dndvi_other"] == pytest.approx(0)
    assert desc["sites"]["b"]["pre_event"] is None
    assert "a: pre-event image, mean NDVI 0.450 before, 0.100 after; mean dNDVI -0.350 (-0.700 on landslides)" \
        in format_description(desc)
