"""Units: every channel has one, Landslide4Sense is read in them, checkpoints record them, scenes are checked.

The guard's promise is tested both ways on the synthetic sites: a model trained on any one of them mapping any
other passes (real scene-to-scene variation), and digital numbers, a radians slope, a DEM in km or a swapped band
order are refused in one line with nothing written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

import l4s_fixtures as fx
from slidemap.cli import main
from slidemap.data.patchsets.landslide4sense import STORED, STORED_SCALE, to_physical
from slidemap.data.sites.reader import read_sites
from slidemap.data.sites.units import QUANTILES, Distribution, sample_distribution, units_of
from slidemap.data.tiling.patches import Normaliser
from slidemap.data.tiling.split import split_sites
from slidemap.errors import InputError
from slidemap.evaluation.scoring import area_results, confusion_counts
from slidemap.mapping.checkpoint import TrainedModel, load_checkpoint
from slidemap.mapping.unit_guard import area_distribution, check_units
from slidemap.models import build_net
from slidemap.training.module import LandslideModule

from checkpoints import unet_config
from conftest import compose_config, run_training

POST = ("blue", "green", "red", "nir", "slope", "dem", "ndvi")  # the paper's B2, B3, B4, B8 + terrain


# ---------------------------------------------------------------- the unit table and Landslide4Sense's vector


def test_every_channel_has_a_unit():
    assert units_of(("B2", "B8_pre", "slope", "dem", "ndvi", "rdndvi")) == \
        ("reflectance", "reflectance", "degrees", "metres", "index", "index")
    # a site's bands take its site.yaml 'units' (8-bit RGB imagery: brightness 0-1); terrain and indices never do
    assert units_of(("red", "nir_pre", "slope", "dndvi"), "brightness") == \
        ("brightness", "brightness", "degrees", "index")
    with pytest.raises(ValueError, match="unknown channel 'B13'"):
        units_of(("B13",))


def test_the_stored_scale_is_the_authors_mean_vector():
    assert STORED_SCALE == fx.AUTHORS_MEANS and len(STORED_SCALE) == len(STORED) == 14


def test_stored_values_become_reflectance_degrees_and_metres_by_hand():
    # stored B4 2.0 x 445.17289745 = 890.3457949 DN -> x 1e-4 = 0.08903457949 reflectance;
    # stored slope 1.5 x 20.29228266 = 30.43842399 degrees; stored DEM 2.0 x 772.83144788 = 1545.66289576 m;
    # stored B1 0.5 x 1111.81236406 = 555.90618203 DN -> 0.055590618203.
    stored = (0, 3, 12, 13)
    raw = np.empty((4, 2, 2), np.float32)
    raw[0], raw[1], raw[2], raw[3] = 0.5, 2.0, 1.5, 2.0
    raw[:, 1, 1] = np.nan
    valid = np.isfinite(raw).all(axis=0)
    out = to_physical(raw, stored, valid)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], [0.055590618203, 0.08903457949, 30.43842399, 1545.66289576], rtol=1e-6)
    assert (out[:, 1, 1] == 0).all()


# ---------------------------------------------------------------- distributions


def test_distribution_is_exact_in_mean_and_std_and_samples_quantiles_uniformly():
    # Two pieces: 0..9999 then 10000..19999 (one channel; channel 2 = -2 x channel 1); the first half of
    # the second piece is invalid. Valid: 0..9999 and 15000..19999 -> 15000 values.
    a, b = np.arange(10000.0).reshape(100, 100), np.arange(10000.0, 20000.0).reshape(100, 100)
    vb = np.ones((100, 100), bool)
    vb[:50] = False
    values = np.concatenate([np.arange(10000.0), np.arange(15000.0, 20000.0)])
    pieces = [((x, -2 * x), v) for x, v in ((a, np.ones((100, 100), bool)), (b, vb))]
    whole = sample_distribution(("B2", "B3"), pieces, size=10**6)
    assert whole.count == 15000
    np.testing.assert_allclose(whole.mean, [values.mean(), -2 * values.mean()])
    np.testing.assert_allclose(whole.std, [values.std(), 2 * values.std()])
    np.testing.assert_allclose(whole.quantiles[0], np.percentile(values, QUANTILES))  # everything kept: exact
    sampled = sample_distribution(("B2", "B3"), pieces, size=3000)
    np.testing.assert_allclose(sampled.mean, whole.mean)  # still exact
    # 3000 of 15000 drawn uniformly: the median (exact: 7499.5, the 7500th of 0..9999) within 600 (sd ~ 140).
    assert abs(sampled.percentile(0, 50) - 7499.5) < 600
    assert sampled.percentile(1, 50) == pytest.approx(-2 * sampled.percentile(0, 50))  # the same pixels
    assert sample_distribution(("B2",), [((a,), np.zeros((100, 100), bool))]) is None
    again = Distribution.from_dict(json.loads(json.dumps(sampled.to_dict())))
    np.testing.assert_array_equal(again.quantiles, sampled.quantiles)


# ---------------------------------------------------------------- checkpoints


def write_checkpoint(path: Path, info: dict) -> Path:
    channels = ["B2", "B3", "B4", "B8", "slope"]
    norm = Normaliser(tuple(channels), np.zeros(5, np.float32), np.ones(5, np.float32))
    cfg = unet_config(5, 4)
    module = LandslideModule(build_net(cfg), model={"name": "unet", "net": cfg},
                             data_info={"channels": channels, "window": 32, "normaliser": norm.to_dict(), **info})
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def a_distribution(channels=("B2", "B3", "B4", "B8", "slope")) -> Distribution:
    rng = np.random.default_rng(0)
    return sample_distribution(channels, [((rng.random((8, 8)) for _ in channels), np.ones((8, 8), bool))])


def test_checkpoint_units_and_distribution_round_trip(tmp_path, caplog):
    dist = a_distribution()
    units = list(units_of(dist.channels))
    model = load_checkpoint(write_checkpoint(tmp_path / "new.ckpt", {"units": units, "distribution": dist.to_dict()}))
    assert model.units == tuple(units)
    np.testing.assert_allclose(model.distribution.quantiles, dist.quantiles)
    old = load_checkpoint(write_checkpoint(tmp_path / "old.ckpt", {}))  # before units were recorded: still loads
    assert old.units is None and old.distribution is None
    with caplog.at_level(logging.WARNING, logger="slidemap.mapping.unit_guard"):
        assert check_units(old, dist, "scene") == []
    assert "units guard is skipped" in caplog.text


@pytest.mark.parametrize("info, message", [
    ({"units": ["reflectance"], "distribution": None}, "malformed units record"),
    ({"units": list(units_of(POST[:5])), "distribution": {"channels": ["B2"]}}, "malformed training distribution"),
    ({"units": list(units_of(POST[:5])), "distribution": a_distribution(("B2", "B3", "B4", "B8", "dem")).to_dict()},
     "training distribution of ['blue', 'green', 'red', 'nir', 'dem']"),
])
def test_malformed_unit_records_are_one_line_errors(tmp_path, info, message):
    with pytest.raises(InputError) as err:
        load_checkpoint(write_checkpoint(tmp_path / "bad.ckpt", info))
    assert message in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- the guard on the synthetic sites


@pytest.fixture(scope="module")
def sites(synthetic_root):
    read = read_sites(synthetic_root)
    return read, split_sites(read)


def model_of(distribution: Distribution) -> TrainedModel:
    c = distribution.channels
    return TrainedModel(torch.nn.Identity(), "unet", c, 64, Normaliser(c, np.zeros(len(c)), np.ones(len(c))), 0.5,
                        Path("model.ckpt"), units_of(c), distribution)


MISTAKES = {
    "digital numbers": (lambda s: dataclasses.replace(s, bands=s.bands * 1e4), "blue: median", "digital numbers"),
    "radians": (lambda s: dataclasses.replace(s, slope=np.deg2rad(s.slope)), "slope: p99", "radians"),
    "kilometres": (lambda s: dataclasses.replace(s, dem=s.dem / 1000), "dem: p99", "kilometres"),
    "B4 <-> B8": (lambda s: dataclasses.replace(s, bands=s.bands[[0, 1, 3, 2]]), "red and nir look swapped", ""),
    "B2 <-> B8": (lambda s: dataclasses.replace(s, bands=s.bands[[3, 1, 2, 0]]), "blue and nir look swapped", ""),
}


def test_scene_to_scene_variation_passes_and_units_errors_always_fail(sites):
    read, splits = sites
    for trained_on, site in read.items():
        model = model_of(area_distribution(site, splits[trained_on].train, POST))
        for mapped, other in read.items():
            check_units(model, area_distribution(other, splits[mapped].test, POST), mapped)  # no error
            for mistake, (spoil, where, why) in MISTAKES.items():
                with pytest.raises(InputError) as err:
                    check_units(model, area_distribution(spoil(other), splits[mapped].test, POST), mapped)
                message = str(err.value)
                assert where in message and why in message and "\n" not in message, (trained_on, mapped, mistake)


def test_a_checkpoint_trained_on_landslide4sense_stored_values_is_refused(sites):
    # What data=landslide4sense trained on before the conversion: each channel divided by the authors' mean.
    read, splits = sites
    japan = read["japan"]
    means = np.asarray(fx.AUTHORS_MEANS)
    stored = dataclasses.replace(japan, bands=japan.bands * 1e4 / means[[1, 2, 3, 7], None, None],
                                 slope=japan.slope / means[12], dem=japan.dem / means[13])
    model = model_of(area_distribution(stored, splits["japan"].train, POST))
    with pytest.raises(InputError) as err:
        check_units(model, area_distribution(japan, splits["japan"].test, POST), "japan")
    message = str(err.value)
    assert message.startswith("model.ckpt: was trained on inputs in other units than japan holds: ")
    # Japan's slope p99 28.7 / 20.29 = 1.41 <= pi/2; DEM p99 325 / 772.8 = 0.42 < 9; B4 median 0.0894 / 0.0445 = 2.0
    for part in ("slope: p99 1.", "radians?", "dem: p99 0.", "kilometres?", "retrain it"):
        assert part in message, part
    assert "\n" not in message


def test_far_from_training_warns(sites, caplog):
    read, splits = sites
    model = model_of(area_distribution(read["china"], splits["china"].train, POST))
    with caplog.at_level(logging.WARNING, logger="slidemap.mapping.unit_guard"):
        warnings = check_units(model, area_distribution(read["japan"], splits["japan"].test, POST), "japan")
    # Japan's hills (median ~80 m) are ~9 training sd below China's (median ~2300 m, sd ~240 m).
    assert [w.split()[0] for w in warnings] == ["dem"] and "far from the training data" in caplog.text


# ---------------------------------------------------------------- slidemap map and eval.py refuse, nothing written


def spoilt_copy(src: Path, dst: Path, mistake: str) -> Path:
    """A copy of a synthetic site folder with one units mistake a user could make."""
    shutil.copytree(src, dst)
    meta = yaml.safe_load((dst / "site.yaml").read_text())
    if mistake == "digital numbers":
        meta["scale"] = 1.0  # "my s2.tif is reflectance": it holds DN
    elif mistake == "band order":
        meta["bands"] = ["B2", "B3", "B8", "B4"]
    elif mistake == "km":
        with rasterio.open(dst / "dem.tif") as f:
            profile, dem = f.profile, f.read(1)
        with rasterio.open(dst / "dem.tif", "w", **profile) as f:
            f.write(np.where(dem == profile["nodata"], dem, dem / 1000), 1)
    (dst / "site.yaml").write_text(yaml.safe_dump(meta))
    return dst


@pytest.mark.parametrize("mistake, expected", [
    # digital numbers: refused by the site reader already (no scene can have a median reflectance above 2)
    ("digital numbers", "s2.tif: values cannot be surface reflectance"), ("band order", "red and nir look swapped"),
    ("km", "slope: p99"),  # the model reads no DEM, but slope is derived from it: a DEM in km flattens it 1000x
])
def test_map_refuses_a_scene_in_other_units_in_one_line(capsys, tiny_run, synthetic_root, tmp_path, mistake, expected):
    scene = spoilt_copy(synthetic_root / "japan", tmp_path / "japan", mistake)
    out = tmp_path / "maps"
    code = main(["map", "--ckpt", str(tiny_run), "--scene", str(scene), "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    lines = stderr.strip().splitlines()
    assert code == 2 and stdout == "" and len(lines) == 1, stderr
    assert lines[0].startswith(f"slidemap map: error: {scene}") and expected in lines[0]
    assert not out.exists()  # a failed map leaves no --out behind


def test_eval_refuses_test_areas_in_other_units(tiny_run, synthetic_root, tmp_path):
    from hydra import compose, initialize_config_dir

    from slidemap.evaluation.evaluate import run

    spoilt_copy(synthetic_root / "japan", tmp_path / "root" / "japan", "km")  # the reader cannot tell: the guard
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt_path={tiny_run}", "data=scenes", f"data.root={tmp_path / 'root'}",
                                         "check_normaliser=false", f"paths.output_dir={tmp_path / 'out'}"])
    with pytest.raises(InputError, match="japan \\(test area\\): input cannot be in the checkpoint's units: slope"):
        run(cfg)
    assert not list((tmp_path / "out").glob("*"))


# ---------------------------------------------------------------- Landslide4Sense-trained model, physical scene


@pytest.mark.slow
def test_l4s_trained_model_maps_the_same_ground_in_physical_units(synthetic_root, tmp_path, capsys):
    # Japan's synthetic site cut into an L4S-layout copy (stored = physical / the authors' vector); a U-Net
    # trained on it through data=landslide4sense must map the site folder (reflectance, degrees, metres) as well
    # as it scores on TestData, on exactly the TestData pixels. Before the conversion: F1 0.69 vs 0.10.
    sites = read_sites(synthetic_root, ["japan"])
    splits = split_sites(sites)
    origins = fx.write_l4s_from_sites(tmp_path / "L4S", sites, splits)
    run = run_training(compose_config("train", tmp_path / "run", [
        "data=landslide4sense", f"data.root={tmp_path / 'L4S'}", "window=64", "model.net.base_filters=8",
        "logger=none", "trainer.precision=32-true", "trainer.enable_progress_bar=false", "trainer.max_epochs=3",
        "trainer.min_epochs=1", "+trainer.limit_train_batches=10", "+trainer.limit_val_batches=1",
        "data.batch_size=8", "optimizer.lr=5e-3", "module.pos_weight=3"]))
    test_f1 = json.loads((run / "metrics.json").read_text())["areas"]["landslide4sense"]["f1"]
    model = load_checkpoint(run)
    assert model.units == ("reflectance",) * 4 + ("degrees",)
    assert 0.02 < model.distribution.percentile(0, 50) < 0.3  # B2 as reflectance, not L4S's ~1
    out = tmp_path / "maps"
    assert main(["map", "--ckpt", str(run), "--scene", str(synthetic_root / "japan"), "--out", str(out),
                 "--precision", "32"]) == 0
    capsys.readouterr()
    with rasterio.open(out / "japan_binary.tif") as src:
        binary = src.read(1)
    tiles = np.zeros(binary.shape, bool)
    for _, r, c in origins["TestData"]:
        tiles[r:r + fx.SIZE, c:c + fx.SIZE] = True
    site = sites["japan"]
    map_f1 = area_results({"japan": confusion_counts(binary == 1, site.label, site.valid & tiles)})["japan"]["f1"]
    print(f"Landslide4Sense-trained U-Net: TestData F1 {test_f1:.3f}, the same pixels mapped from the site folder "
          f"{map_f1:.3f}")
    assert test_f1 > 0.5, "the tiny model should have learnt something"
    assert abs(map_f1 - test_f1) < 0.05, (test_f1, map_f1)
