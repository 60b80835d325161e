"""Any sensor (issue 16): channels by common name, image.tif of any bands and pixel size, units, input sets by
channel name, a missing channel in one line, windows declared in config, describe's sensor columns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from hydra.utils import instantiate

from slidemap.cli import main as cli_main
from slidemap.data.sites.channels import canonical, canonical_all
from slidemap.data.sites.reader import read_site, read_sites
from slidemap.data.tiling.split import split_sites
from slidemap.errors import InputError
from slidemap.evaluation.baseline import run_baseline
from slidemap.reporting.describe import describe_sites, format_description
from slidemap.training.run import check_choices

import fake_sites as fs
from conftest import TINY_TRAINING, TINY_UNET, compose_config, run_training
from sensor_fixtures import write_sensor_sites


def one_line(fn) -> str:
    with pytest.raises(InputError) as err:
        fn()
    text = str(err.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name,expected", [
    ("B2", "blue"), ("b02", "blue"), ("B8", "nir"), ("B8A", "nir08"), ("B11", "swir16"), ("B12", "swir22"),
    ("B5", "rededge071"), ("NIR", "nir"), ("Red", "red"), ("B4_pre", "red_pre"), ("nir_pre", "nir_pre"),
    ("slope", "slope"), ("DEM", "dem"), ("ndvi_pre", "ndvi_pre"), ("rdndvi", "rdndvi"),
])
def test_sentinel2_ids_are_aliases_of_the_common_names(name, expected):
    assert canonical(name) == expected


@pytest.mark.parametrize("name", ["B13", "thermal", "slope_pre", "B0"])
def test_an_unknown_channel_names_what_is_accepted(name):
    with pytest.raises(ValueError, match=f"unknown channel '{name}'.*common names.*B2 = blue"):
        canonical(name)


def test_the_paper_input_sets_keep_their_meaning():
    assert canonical_all(["B2", "B3", "B4", "B8", "slope"]) == ("blue", "green", "red", "nir", "slope")
    post = yaml.safe_load(Path("conf/inputs/post.yaml").read_text())["channels"]
    assert tuple(post) == ("blue", "green", "red", "nir", "slope")


# ---------------------------------------------------------------- reading sites of other sensors


@pytest.fixture(scope="module")
def rgb_root(synthetic_root, tmp_path_factory) -> Path:
    return write_sensor_sites(synthetic_root, tmp_path_factory.mktemp("rgb") / "sites", "aerial_rgb")


@pytest.fixture(scope="module")
def planet_root(synthetic_root, tmp_path_factory) -> Path:
    return write_sensor_sites(synthetic_root, tmp_path_factory.mktemp("planet") / "sites", "planetscope")


def test_rgb_orthophoto_by_colour_interpretation_in_brightness(rgb_root, synthetic_root):
    site = read_site(rgb_root / "japan")
    s2 = read_site(synthetic_root / "japan")
    rows = cols = slice(0, 160)
    assert site.band_names == ("red", "green", "blue") and site.optical_unit == "brightness"
    assert site.pixel_size_m == 0.5 and site.channels == ("red", "green", "blue", "slope", "dem")
    with rasterio.open(rgb_root / "japan" / "image.tif") as src:
        rgba = src.read()
    v = site.valid
    np.testing.assert_array_equal(v & (rgba[3] == 0), False)  # alpha 0 is never valid
    np.testing.assert_allclose(site.channel("red")[v], rgba[0][v] / 255.0, rtol=1e-6)  # uint8 / 255
    # the DSM came through EPSG:4326 and back at 0.5 m, with elevations scaled like the pixels: the same slopes
    diff = np.abs(site.slope[v] - s2.slope[rows, cols][v])
    assert np.median(diff) < 1.0 and np.percentile(diff, 95) < 3.0


def test_planetscope_by_band_descriptions_in_reflectance(planet_root, synthetic_root):
    site = read_site(planet_root / "taiwan")
    s2 = read_site(synthetic_root / "taiwan")
    v = site.valid
    assert site.band_names == ("blue", "green", "red", "nir") and site.optical_unit == "reflectance"
    assert site.pixel_size_m == 3.0 and "ndvi" in site.channels
    np.testing.assert_allclose(site.channel("B8")[v], s2.channel("nir")[:160, :160][v], atol=5.1e-5)  # DN x 1e-4
    inner = (slice(1, -1), slice(1, -1))  # the crop's edge pixels lost their outer neighbours
    np.testing.assert_allclose(site.slope[inner][v[inner]], s2.slope[:160, :160][inner][v[inner]], atol=0.01)


def test_16_bit_brightness_needs_a_scale_as_in_patch_datasets(planet_root, tmp_path):
    site = tmp_path / "s"
    shutil.copytree(planet_root / "china", site)
    (site / "site.yaml").write_text(yaml.safe_dump({"units": "brightness"}))
    assert "image.tif: uint16 brightness has no default scale (uint8 is / 255): give 'scale'" in \
        one_line(lambda: read_site(site))
    (site / "site.yaml").write_text(yaml.safe_dump({"units": "brightness", "scale": 1 / 4095}))
    assert read_site(site).optical_unit == "brightness"


def test_bad_image_sites_are_one_line(rgb_root, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(rgb_root / "china", both)
    fs.make_site(tmp_path / "s2only")
    shutil.copy(tmp_path / "s2only" / "s2.tif", both / "s2.tif")
    assert "holds both s2.tif and image.tif" in one_line(lambda: read_site(both))

    unnamed = tmp_path / "unnamed"
    shutil.copytree(rgb_root / "china", unnamed)
    with rasterio.open(unnamed / "image.tif", "r+") as dst:
        dst.colorinterp = [rasterio.enums.ColorInterp.gray] * 4
    assert "cannot tell which of its 4 band(s) is which: name them in site.yaml 'bands'" in \
        one_line(lambda: read_site(unnamed))
    (unnamed / "site.yaml").write_text(yaml.safe_dump({"units": "brightness", "bands": ["red", "green", "thermal"]}))
    assert "site.yaml 'bands' names 'thermal', which is no band" in one_line(lambda: read_site(unnamed))
    (unnamed / "site.yaml").write_text(yaml.safe_dump({"units": "brightness", "bands": ["red", "green", "blue"]}))
    assert read_site(unnamed).band_names == ("red", "green", "blue")  # named in site.yaml, the 4th band unused

    (unnamed / "site.yaml").write_text(yaml.safe_dump({"units": "dn", "bands": ["red", "green", "blue"]}))
    assert "'units' must be one of reflectance, brightness" in one_line(lambda: read_site(unnamed))
    (unnamed / "site.yaml").write_text(yaml.safe_dump({"bands": ["red", "green", "blue"]}))  # 8-bit, no units
    assert "8-bit values are no reflectance (x 10000 would need 16 bits): set 'units: brightness'" in \
        one_line(lambda: read_site(unnamed))


# ---------------------------------------------------------------- training, mapping and the guard


def train(root: Path, out: Path, *overrides: str) -> Path:
    cfg = compose_config("train", out, ["data=scenes", f"data.root={root}", "window=32", *TINY_TRAINING, TINY_UNET,
                                        *overrides])
    return run_training(cfg)


@pytest.fixture(scope="module")
def rgb_run(rgb_root, tmp_path_factory) -> Path:
    return train(rgb_root, tmp_path_factory.mktemp("rgb-run") / "run", "inputs=rgb", "scenario=japan")


def test_rgb_site_at_half_a_metre_trains_with_inputs_rgb(rgb_run):
    metrics = json.loads((rgb_run / "metrics.json").read_text())
    assert set(metrics["areas"]) == {"china", "japan", "taiwan", "all"} and metrics["inputs"] == "rgb"
    assert metrics["channels"] == ["red", "green", "blue", "slope"]
    info = torch.load(rgb_run / "checkpoints" / "best.ckpt", weights_only=False)["hyper_parameters"]["data_info"]
    assert info["channels"] == ["red", "green", "blue", "slope"]
    assert info["units"] == ["brightness", "brightness", "brightness", "degrees"]


def test_rgb_model_maps_an_rgb_scene_on_its_grid(rgb_run, rgb_root, tmp_path):
    out = tmp_path / "maps"
    assert cli_main(["map", "--ckpt", str(rgb_run), "--scene", str(rgb_root / "japan"), "--out", str(out)]) in (0, None)
    with rasterio.open(out / "japan_probability.tif") as prob, rasterio.open(rgb_root / "japan" / "image.tif") as img:
        assert (prob.crs, prob.transform, prob.shape) == (img.crs, img.transform, img.shape)
        values = prob.read(1, masked=True)
    assert 0.0 <= float(values.min()) and float(values.max()) <= 1.0 and values.count() > 0.8 * 160 * 160


def test_a_brightness_model_refuses_a_reflectance_scene(rgb_run, planet_root, tmp_path, capsys):
    code = cli_main(["map", "--ckpt", str(rgb_run), "--scene", str(planet_root / "japan"), "--out",
                     str(tmp_path / "maps")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not (tmp_path / "maps").exists()
    assert "holds bands in reflectance but the model was trained on red (brightness)" in err[0]


def test_planetscope_like_site_at_three_metres_trains_with_inputs_rgbn(planet_root, tmp_path):
    run = train(planet_root, tmp_path / "run", "inputs=rgbn", "scenario=taiwan")
    info = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)["hyper_parameters"]["data_info"]
    assert info["channels"] == ["red", "green", "blue", "nir", "slope"]
    assert info["units"] == ["reflectance"] * 4 + ["degrees"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["inputs"] == "rgbn" and 0.0 <= metrics["areas"]["taiwan"]["f1"] <= 1.0


def test_a_channel_missing_from_one_site_is_one_line(rgb_root, planet_root, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(planet_root, mixed)
    shutil.rmtree(mixed / "japan")
    shutil.copytree(rgb_root / "japan", mixed / "japan")
    (mixed / "japan" / "site.yaml").write_text(yaml.safe_dump({"units": "reflectance", "scale": 0.001}))
    cfg = compose_config("train", tmp_path / "run", ["data=scenes", f"data.root={mixed}", "window=32", "inputs=rgbn",
                                                     *TINY_TRAINING, TINY_UNET])
    text = one_line(lambda: run_training(cfg))
    assert text.endswith("site 'japan' has no nir band; its bands: red, green, blue")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_sites_in_different_units_cannot_train_one_model(rgb_root, planet_root, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(planet_root, mixed)
    shutil.rmtree(mixed / "japan")
    shutil.copytree(rgb_root / "japan", mixed / "japan")
    cfg = compose_config("train", tmp_path / "run", ["data=scenes", f"data.root={mixed}", "window=32", "inputs=rgb",
                                                     *TINY_TRAINING, TINY_UNET])
    assert "the sites' bands are in different units (china reflectance, japan brightness, taiwan reflectance" in \
        one_line(lambda: run_training(cfg))


def test_rules_say_they_cannot_run_without_nir(rgb_root):
    sites = read_sites(rgb_root)
    text = one_line(lambda: run_baseline(sites, split_sites(sites), {"all": list(sites)}))
    assert "the ndvi rule cannot run on site 'china': NDVI needs red and nir bands, the site has red, green, blue" \
        in text


def test_describe_shows_sensor_bands_units_and_pixel_size(rgb_root, planet_root):
    rgb = describe_sites(read_sites(rgb_root))["sites"]["japan"]
    assert (rgb["sensor"], rgb["image"], rgb["bands"], rgb["units"], rgb["pixel_size_m"]) == \
        ("aerial RGB orthophoto", "image.tif", ["red", "green", "blue"], "brightness", 0.5)
    text = format_description(describe_sites(read_sites(planet_root)))
    assert "taiwan: PlanetScope (image.tif), bands blue, green, red, nir in reflectance, 3 m pixels" in text


# ---------------------------------------------------------------- windows declared in config


def test_windows_are_declared_in_config(tmp_path):
    def check(*overrides: str) -> None:
        cfg = compose_config("train", tmp_path, list(overrides))
        check_choices(cfg, instantiate(cfg.data).windows)  # as train.py does, before anything is read

    assert "unsupported window 256; choose one of 32, 64, 128" in one_line(lambda: check("window=256"))
    check("window=256", "data.windows=[256]")  # 0.5 m imagery: no code change
    with pytest.raises(Exception) as err:  # Hydra wraps a constructor's error; train.py prints the cause alone
        check("window=64", "data.windows=[64,0]")
    assert str(err.value.__cause__) == "data.windows: must be an integer >= 1, got 0"


def test_bad_channels_and_windows_are_one_line_from_train_py(tmp_path):
    import subprocess
    import sys

    for override, message in (("inputs.channels=[red,thermal]", "inputs: unknown channel 'thermal'"),
                              ("data.windows=[64,-1]", "data.windows: must be an integer >= 1, got -1")):
        done = subprocess.run([sys.executable, "train.py", override, "logger=none", f"hydra.run.dir={tmp_path}/r"],
                              capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and "Traceback" not in done.stderr and message in lines[-1], done.stderr
