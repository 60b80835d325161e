"""Landslide4Sense: channel picking in physical units, NaN as no-data, TrainData-only statistics, tiles, bad input,
the sweep."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import l4s_fixtures as fx
from slidemap.data.patchsets.landslide4sense import Landslide4SenseDataModule, list_pairs, read_split, stored_indices
from slidemap.errors import InputError
from slidemap.training.outputs import write_test_outputs

from conftest import constant_keys_unnamed

REPO = Path(__file__).resolve().parents[1]
NAN_ROWS = 5  # TestData image_1 has NaN in B4 on rows 0-4 (l4s_fixtures.write_l4s)


@pytest.fixture(scope="module")
def l4s_root(tmp_path_factory) -> Path:
    return fx.write_l4s(tmp_path_factory.mktemp("l4s") / "L4S")


@pytest.fixture()
def fresh_root(tmp_path) -> Path:
    """A labelled L4S folder a test may break."""
    return fx.write_l4s(tmp_path / "L4S")


def ready(root: Path, **kwargs) -> Landslide4SenseDataModule:
    dm = Landslide4SenseDataModule(str(root), **kwargs)
    dm.setup()
    return dm


def labels_of_test(root: Path) -> np.ndarray:
    return np.stack([fx.read_h5(root / "TestData" / "mask" / f"mask_{i}.h5", "mask") for i in (1, 2, 3)])


# ---------------------------------------------------------------- reading


def test_channels_are_picked_by_name_from_the_official_order(l4s_root):
    # Stored order: B1..B12 are 0..11 (no B8A), slope 12, DEM 13; NDVI needs B4 (3) and B8 (7).
    assert stored_indices(("B2", "B3", "B4", "B8", "slope")) == (1, 2, 3, 7, 12)
    assert stored_indices(("dem", "B2")) == (1, 13)
    assert stored_indices(("ndvi",)) == (3, 7)
    channels = ("slope", "B8", "dem", "ndvi", "B2")
    split = read_split(l4s_root, "ValidData", channels)
    img = fx.read_h5(l4s_root / "ValidData" / "img" / "image_2.h5", "img")
    physical = img * np.asarray(fx.AUTHORS_MEANS)  # B1..B12 in DN (-> x 1e-4 reflectance), degrees, metres
    red, nir = physical[..., 3] * 1e-4, physical[..., 7] * 1e-4
    expected = np.stack([physical[..., 12], nir, physical[..., 13], (nir - red) / (nir + red), physical[..., 1] * 1e-4])
    assert split.x.shape == (2, 5, 128, 128) and split.x.dtype == np.float32
    np.testing.assert_allclose(split.x[1], expected, rtol=1e-5)
    np.testing.assert_array_equal(split.y[1], fx.read_h5(l4s_root / "ValidData" / "mask" / "mask_2.h5", "mask"))
    assert split.names == ("image_1", "image_2")


def test_images_are_ordered_by_number_not_by_text(tmp_path):
    for n in (10, 2, 1):
        fx.write_pair(tmp_path, "TrainData", n, fx.image(n), fx.mask(n))
    assert [p.name for p, _ in list_pairs(tmp_path, "TrainData")] == ["image_1.h5", "image_2.h5", "image_10.h5"]


def test_nan_pixels_are_no_data_with_zero_input(l4s_root, caplog):
    with caplog.at_level(logging.INFO, logger="slidemap.data.patchsets.landslide4sense"):
        dm = ready(l4s_root, window=128)
    x, y, valid = next(iter(dm.test_dataloader()[0]))
    assert (x.dtype, y.dtype, valid.dtype) == (torch.float32, torch.float32, torch.bool)
    assert x.shape == (3, 5, 128, 128) and y.shape == valid.shape == (3, 128, 128)
    assert not valid[0, :NAN_ROWS].any()
    assert valid[0, NAN_ROWS:].all()  # the NaN row in B1 does not count: B1 is not an input here
    assert (x[0, :, :NAN_ROWS] == 0).all() and torch.isfinite(x).all()
    assert valid[1:].all()
    train_valid = dm.data.train.valid
    assert not train_valid[1, :, 0].any() and train_valid[1, :, 1:].all()  # TrainData image_2: slope NaN, column 0
    # 5 rows x 128 of 3 x 128 x 128 test pixels = 1.302 %
    assert "TestData: 3 patches, 0.05 M pixels" in caplog.text and "share 1.302%" in caplog.text


def test_nan_in_b1_invalidates_nothing_unless_an_input_needs_it(l4s_root):
    assert ready(l4s_root, window=128, channels=["B2"]).data.test.valid[0].all()
    assert not ready(l4s_root, window=128, channels=["ndvi"]).data.test.valid[0, :NAN_ROWS].any()  # ndvi reads B4


# ---------------------------------------------------------------- normalisation


def test_statistics_come_from_train_data_valid_pixels_only(tmp_path):
    # TrainData: image 1 has B2 = 1, B3 = 2; image 2 has B2 = 3, B3 = 6 with B2 NaN on rows 64-127 (those pixels
    # are invalid for every input). Valid/Test data hold 100 and must not move the statistics.
    # Stored B2: 16384 px of 1 and 8192 px of 3 -> mean 5/3, E[x^2] = 11/3, variance 8/9. B3 = 2 B2. Read in
    # reflectance: B2 x 824.63171476e-4, B3 x 663.41636217e-4 (the authors' vector, then DN -> reflectance).
    def const(b2: float, b3: float) -> np.ndarray:
        img = np.full((128, 128, 14), 7.0)
        img[..., 1], img[..., 2] = b2, b3
        return img

    second = const(3.0, 6.0)
    second[64:, :, 1] = np.nan
    zero = np.zeros((128, 128), np.uint8)
    fx.write_pair(tmp_path, "TrainData", 1, const(1.0, 2.0), zero)
    fx.write_pair(tmp_path, "TrainData", 2, second, zero)
    fx.write_pair(tmp_path, "ValidData", 1, const(100.0, 100.0), zero)
    fx.write_pair(tmp_path, "TestData", 1, const(100.0, 100.0), zero)
    dm = ready(tmp_path, window=128, channels=["B2", "B3"])
    norm = dm.checkpoint_info()["normaliser"]
    b2, b3 = 824.63171476e-4, 663.41636217e-4
    std = math.sqrt(8) / 3
    assert norm["channels"] == ["blue", "green"]  # B2, B3 by their common names
    np.testing.assert_allclose(norm["mean"], [5 / 3 * b2, 10 / 3 * b3], rtol=1e-6)
    np.testing.assert_allclose(norm["std"], [std * b2, 2 * std * b3], rtol=1e-5)
    np.testing.assert_allclose(dm.data.test.x[0, 0], (100 - 5 / 3) / std, rtol=1e-5)  # the scale cancels
    np.testing.assert_allclose(dm.data.train.x[0, 1], (2 - 10 / 3) / (2 * std), rtol=1e-5)
    dist = dm.checkpoint_info()["distribution"]  # the units guard's record: the same pixels, physical units
    np.testing.assert_allclose(dist["mean"], norm["mean"], rtol=1e-6)
    assert dist["count"] == 16384 + 8192 and dist["quantiles"][0][2] == pytest.approx(b2, rel=1e-6)  # median 1 x b2


def test_checkpoint_info_records_what_mapping_needs(l4s_root):
    info = ready(l4s_root, window=64, channels=["B2", "dem"]).checkpoint_info()
    assert (info["channels"], info["window"], info["train_sites"]) == (["blue", "dem"], 64, ["landslide4sense"])
    assert len(info["normaliser"]["mean"]) == len(info["normaliser"]["std"]) == 2
    assert info["units"] == ["reflectance", "metres"] and info["distribution"]["channels"] == ["blue", "dem"]


# ---------------------------------------------------------------- tiles and scoring


@pytest.mark.parametrize("window, per_image", [(32, 16), (64, 4), (128, 1)])
def test_each_patch_is_cut_into_non_overlapping_tiles(l4s_root, window, per_image):
    dm = ready(l4s_root, window=window)
    assert (len(dm.data.train), len(dm.data.val), len(dm.data.test)) == (4 * per_image, 2 * per_image, 3 * per_image)
    x, y, valid = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 5, window, window) and y.shape == valid.shape == (4, window, window)
    assert dm.test_areas == ["landslide4sense"] and dm.in_channels == 5


def test_tiles_are_row_major_pieces_of_their_patch(l4s_root):
    whole, tiles = ready(l4s_root, window=128).data.test, ready(l4s_root, window=32).data.test
    # Tile 16 + 6 is image 2's tile in row 1, column 2 (4 tiles a row).
    np.testing.assert_array_equal(tiles.x[22], whole.x[1, :, 32:64, 64:96])
    np.testing.assert_array_equal(tiles.y[22], whole.y[1, 32:64, 64:96])
    assert tiles.origins[22].tolist() == [1, 32, 64]


def test_every_test_pixel_is_served_once(l4s_root):
    masks = labels_of_test(l4s_root)
    masks[0, :NAN_ROWS] = 0  # no-data rows do not count
    for window in (32, 64, 128):
        batches = list(ready(l4s_root, window=window).test_dataloader()[0])
        valid = sum(int(v.sum()) for _, _, v in batches)
        landslide = sum(int((y.bool() & v).sum()) for _, y, v in batches)
        assert valid == 3 * 128 * 128 - NAN_ROWS * 128
        assert landslide == int(masks.sum())


def test_tiles_without_any_valid_pixel_are_dropped(fresh_root):
    img = fx.image(0)
    img[:32, :32, 1] = np.nan  # B2: image 1's first 32 px tile is all no-data
    fx.write_pair(fresh_root, "TestData", 1, img, fx.mask(0))
    test = ready(fresh_root, window=32).data.test
    assert len(test) == 47 and [0, 0, 0] not in test.origins.tolist()


def test_test_outputs_are_previews_only(l4s_root, tmp_path):
    dm = ready(l4s_root, window=32)
    # The labels as "probabilities": the preview's right half must equal the mask on valid pixels, 0 on no-data.
    predicted = []

    def labels(loaders):  # the previews' patches only are predicted
        predicted.append(sum(len(loader.dataset) for loader in loaders))
        return [[y for _, y, _ in loader] for loader in loaders]

    masks = labels_of_test(l4s_root)
    top2 = sorted(np.argsort(-masks.reshape(3, -1).sum(axis=1))[:2])
    previews = write_test_outputs(tmp_path, dm, labels, 0.5, previews=2)
    assert predicted == [sum(int((dm.data.test.origins[:, 0] == i).sum()) for i in top2)]
    assert list(previews) == [f"landslide4sense/image_{i + 1}" for i in top2]
    for i, preview in zip(top2, previews.values()):
        expected = masks[i].astype(np.float32)
        if i == 0:
            expected[:NAN_ROWS] = 0
        assert preview.shape == (128, 256)
        np.testing.assert_array_equal(preview[:, :128], masks[i])
        np.testing.assert_array_equal(preview[:, 128:], expected)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bad input


def _rewrite(root: Path, rel: str, key: str, data: np.ndarray) -> None:
    (root / rel).unlink()
    fx.write_h5(root / rel, key, data)


BAD_INPUTS = {
    "missing root": (lambda r: shutil.rmtree(r), {}, ["L4S", "root not found"]),
    "missing split": (lambda r: shutil.rmtree(r / "ValidData"), {}, ["ValidData", "missing split folder"]),
    "missing img folder": (lambda r: shutil.rmtree(r / "TestData" / "img"), {}, ["TestData/img", "img/image_N.h5"]),
    "empty split": (lambda r: [p.unlink() for p in (r / "TestData" / "img").iterdir()], {},
                    ["TestData/img", "empty split"]),
    "test without masks": (lambda r: shutil.rmtree(r / "TestData" / "mask"), {}, ["TestData/mask", "needs labels"]),
    "image without mask": (lambda r: (r / "TrainData" / "mask" / "mask_3.h5").unlink(), {},
                           ["TrainData/img/image_3.h5", "has no mask", "mask_3.h5"]),
    "wrong image key": (lambda r: _rewrite(r, "TrainData/img/image_2.h5", "data", fx.image(0)), {},
                        ["image_2.h5", "no dataset 'img'", "keys found: ['data']"]),
    "wrong mask key": (lambda r: _rewrite(r, "ValidData/mask/mask_1.h5", "label", fx.mask(0)), {},
                       ["ValidData/mask/mask_1.h5", "no dataset 'mask'", "keys found: ['label']"]),
    "13 channels": (lambda r: _rewrite(r, "TestData/img/image_2.h5", "img", fx.image(0)[..., :13]), {},
                    ["image_2.h5", "shape (128, 128, 13)", "expected (128, 128, 14)"]),
    "channels first": (lambda r: _rewrite(r, "TestData/img/image_3.h5", "img", np.moveaxis(fx.image(0), -1, 0)), {},
                       ["image_3.h5", "shape (14, 128, 128)", "expected (128, 128, 14)"]),
    "mask with 3 dims": (lambda r: _rewrite(r, "TrainData/mask/mask_1.h5", "mask", fx.mask(0)[None]), {},
                         ["mask_1.h5", "shape (1, 128, 128) (3-d)", "expected (128, 128)"]),
    "mask of 0/255": (lambda r: _rewrite(r, "TrainData/mask/mask_4.h5", "mask", fx.mask(0) * 255), {},
                      ["mask_4.h5", "must be 0 or 1", "255"]),
    "not HDF5": (lambda r: (r / "TrainData" / "img" / "image_1.h5").write_text("not hdf5"), {},
                 ["image_1.h5", "cannot read HDF5 image"]),
    "unknown channel": (lambda r: None, {"channels": ["B2", "B13"]}, ["unknown channel 'B13'", "ndvi"]),
    "channel it lacks": (lambda r: None, {"channels": ["B2", "lwir11"]}, ["has no lwir11 channel", "swir22, slope"]),
    "scenario": (lambda r: None, {"train_sites": ["taiwan"]}, ["L4S", "only scenario=all applies", "taiwan"]),
    "window": (lambda r: None, {"window": 48}, ["window 48 px does not tile"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_error(fresh_root, case):
    damage, kwargs, expected = BAD_INPUTS[case]
    damage(fresh_root)
    with pytest.raises(InputError) as err:
        ready(fresh_root, **{"window": 32, **kwargs})
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_config_refuses_a_regional_scenario(l4s_root):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        good = compose("train", overrides=["data=landslide4sense", f"data.root={l4s_root}", "window=128"])
        bad = compose("train", overrides=["data=landslide4sense", f"data.root={l4s_root}", "scenario=japan"])
    dm = instantiate(good.data)
    dm.setup()
    assert (dm.window, dm.channels, dm.train_sites) == (128, ("blue", "green", "red", "nir", "slope"), None)
    with pytest.raises(InputError, match=f"{l4s_root}: .*only scenario=all applies"):
        instantiate(bad.data).setup()


# ---------------------------------------------------------------- the sweep through train.py


@pytest.mark.slow
def test_sweep_of_models_and_windows_scores_every_test_pixel_once(l4s_root, tmp_path):
    # The users' sweep, shrunk: the paper's two models (smp_unet's ResNet-34 alone would take minutes here) with
    # 16 base filters (8 crashes oneDNN in fp32 channels-last on some CPUs), 2 training steps, every test pixel.
    sweep = tmp_path / "sweep"
    args = ["-m", "model=unet,resunet", "window=32,64,128", "model.net.base_filters=16", "data=landslide4sense",
            f"data.root={l4s_root}", "trainer.max_epochs=1", "trainer.min_epochs=1", "logger=csv",
            "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
            f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    done = subprocess.run([sys.executable, str(REPO / "train.py"), *args, constant_keys_unnamed(args)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    masks = labels_of_test(l4s_root)
    masks[0, :NAN_ROWS] = 0
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == sorted(f"{m}-{w}-all" for m in ("unet", "resunet") for w in (32, 64, 128))
    for job in jobs:
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert (metrics["model"], f"{metrics['window']}") == tuple(job.split("-")[:2])
        assert set(metrics["areas"]) == {"landslide4sense", "all"}
        area = metrics["areas"]["landslide4sense"]
        assert area["tp"] + area["fn"] == int(masks.sum()), job
        assert {k: area[k] for k in ("tp", "fp", "fn")} == {k: metrics["areas"]["all"][k] for k in ("tp", "fp", "fn")}
        assert not list((sweep / job).rglob("*.tif")), f"{job}: no GeoTIFFs for unreferenced patches"


def test_pre_event_inputs_are_refused_clearly():
    from slidemap.data.patchsets.landslide4sense import stored_indices
    from slidemap.errors import InputError

    with pytest.raises(InputError, match="Landslide4Sense has no pre-event image: channel\\(s\\) dndvi, rdndvi"):
        stored_indices(("B2", "B3", "B4", "B8", "dndvi", "rdndvi", "slope"))
