"""data=patches: a patch folder in each format trains and is scored; values, units and statistics by hand; mask
no-data; the seeded split drawn from train/; declared windows; every bad input one line."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from omegaconf import OmegaConf
from rasterio.errors import NotGeoreferencedWarning

import patch_fixtures as fx
from conftest import TINY_TRAINING, TINY_UNET, compose_config, run_training
from slidemap.data.patchsets.folder import PatchFolderDataModule, draw_split
from slidemap.errors import InputError
from slidemap.mapping.checkpoint import load_checkpoint
from slidemap.training.run import check_choices

RGBN_SLOPE = ["red", "green", "blue", "nir", "slope"]


def ready(root: Path, **kwargs) -> PatchFolderDataModule:
    dm = PatchFolderDataModule(str(root), **{"window": 32, "channels": RGBN_SLOPE, **kwargs})
    dm.setup()
    return dm


def labelled_test_masks(root: Path, split: str = "test") -> np.ndarray:
    """The test split's labelled landslide pixels, read back with NumPy/rasterio as written."""
    masks = []
    for path in sorted((root / split / "masks").iterdir()):
        if path.suffix == ".npy":
            m = np.load(path)
            masks.append(m == 1)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as src:
                    masks.append(src.read(1) == 1)
    return np.stack(masks)


# ---------------------------------------------------------------- each format trains and is scored


@pytest.mark.parametrize("fmt, inputs, area, units", [
    ("tif", "inputs=rgbn", "tif", ("reflectance",) * 4 + ("degrees",)),
    ("png", "inputs.channels=[red,green,blue]", "rgb-patches", ("brightness",) * 3),
    ("npy", "inputs=rgbn", "npy", ("reflectance",) * 4 + ("degrees",)),
])
def test_each_format_trains_and_is_scored(tmp_path, fmt, inputs, area, units):
    root = fx.write_dataset(tmp_path / fmt, fmt, counts={"train": 10} if fmt == "npy" else None)
    cfg = compose_config("train", tmp_path / "run", ["data=patches", f"data.root={root}", "window=32", inputs,
                                                     *TINY_TRAINING, TINY_UNET])
    run = run_training(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["areas"]) == {area, "all"}
    scores = metrics["areas"][area]
    assert {"precision", "recall", "f1", "tp", "fp", "fn"} <= set(scores)
    assert all(0.0 <= scores[k] <= 1.0 for k in ("precision", "recall", "f1"))
    split = metrics["split"]
    if fmt == "npy":  # only train/: 10 patches drawn 3:1:1, the test patches named; first mask rows are no-data
        assert split["drawn_from_train"] == ["val", "test"] and split["patches"] == {"train": 6, "val": 2, "test": 2}
        positives = sum(int((np.load(root / "train" / "masks" / f"{s}.npy") == 1).sum()) for s in split["test"])
    else:
        assert split == {"drawn_from_train": [], "patches": {"train": 6, "val": 2, "test": 2}}
        positives = int(labelled_test_masks(root).sum())
    assert scores["tp"] + scores["fn"] == positives  # every labelled test landslide pixel scored once
    model = load_checkpoint(Path(metrics["best_checkpoint"]))  # what `slidemap map` will use on a site
    assert model.units == units and model.channels == tuple(metrics["channels"])
    assert model.distribution is not None and model.distribution.channels == model.channels


# ---------------------------------------------------------------- values, units, statistics by hand


def test_values_units_and_normaliser_by_hand(tmp_path):
    # uint8 brightness red/green (/255 by default) and a DEM rising 1 m per column at 2 m pixels: slope atan(0.5).
    # Train: red 51 and 102 (0.2, 0.4) -> mean 0.3, std 0.1. Val/test hold 255 and must not move the statistics.
    def image(red: int, green: int) -> np.ndarray:
        dem = np.broadcast_to(np.arange(8, dtype=np.float64), (8, 8))
        return np.stack([np.full((8, 8), red), np.full((8, 8), green), dem]).astype(np.uint8)

    zero = np.zeros((8, 8), np.uint8)
    for split, values in {"train": [(51, 0), (102, 0)], "val": [(255, 255)], "test": [(255, 255)]}.items():
        for i, (r, g) in enumerate(values):
            fx.write_npy(tmp_path / split / "images" / f"p{i}.npy", image(r, g))
            fx.write_npy(tmp_path / split / "masks" / f"p{i}.npy", zero)
    fx.write_spec(tmp_path, channels=["red", "green", "dem"], units="brightness", pixel_size=2.0, windows=[8])
    dm = ready(tmp_path, window=8, channels=["red", "slope", "dem"])
    info = dm.checkpoint_info()
    slope = math.degrees(math.atan(0.5))
    np.testing.assert_allclose(info["normaliser"]["mean"], [0.3, slope, 3.5], rtol=1e-5)
    np.testing.assert_allclose(info["normaliser"]["std"], [0.1, 1e-6, math.sqrt(5.25)], rtol=1e-4)
    assert info["units"] == ["brightness", "degrees", "metres"] and info["channels"] == ["red", "slope", "dem"]
    assert info["distribution"]["count"] == 2 * 64 and info["train_sites"] == [dm.area] == [tmp_path.name]
    np.testing.assert_allclose(dm.data.test.x[0, 0], (1.0 - 0.3) / 0.1, rtol=1e-5)


def test_integer_reflectance_is_dn_over_10000_and_a_given_scale_wins(tmp_path):
    zero = np.zeros((8, 8), np.uint8)
    for split in ("train", "val", "test"):
        fx.write_tif(tmp_path / split / "images" / "a.tif", np.full((1, 8, 8), 1200, np.uint16))
        fx.write_tif(tmp_path / split / "masks" / "a.tif", zero)
    fx.write_spec(tmp_path, channels=["B8"], windows=[8])
    assert ready(tmp_path, window=8, channels=["nir"]).checkpoint_info()["normaliser"]["mean"] == \
        pytest.approx([0.12])
    fx.write_spec(tmp_path, channels=["nir"], scale=0.0002, offset=-0.1, windows=[8])
    assert ready(tmp_path, window=8, channels=["nir"]).checkpoint_info()["normaliser"]["mean"] == \
        pytest.approx([0.14])


def test_mask_nodata_pixels_get_no_loss_and_no_score(tmp_path):
    root = fx.write_dataset(tmp_path / "npy", "npy")  # every mask's first row is 255 (mask_nodata)
    dm = ready(root)
    for patches in (dm.data.train, dm.data.val, dm.data.test):
        assert not patches.valid[:, 0].any() and patches.valid[:, 1:].all()
        assert (patches.y[:, 0] == 0).all()
        assert (patches.x[:, :, 0] != 0).any()  # the inputs of unlabelled pixels stay: context for sparse labels
    served = sum(int(v.sum()) for _, _, v in dm.test_dataloader()[0])
    assert served == 2 * 31 * 32


def test_alpha_of_an_rgba_png_is_validity_and_sidecars_are_skipped(tmp_path):
    root = fx.write_dataset(tmp_path / "png", "png")
    rgba = np.full((4, 32, 32), 100, np.uint8)
    rgba[3, :4] = 0  # transparent top rows: no data
    (root / "test" / "images" / "patch_1.png").unlink()
    fx.write_png(root / "test" / "images" / "patch_1.png", rgba)
    (root / "test" / "images" / "patch_1.png.aux.xml").write_text("<PAMDataset/>")
    (root / "test" / "images" / "patch_1.pgw").write_text("1\n0\n0\n-1\n0\n0\n")
    dm = ready(root, channels=["red", "green", "blue"])
    valid = dm.data.test_split.valid[0]
    assert not valid[:4].any() and valid[4:].all()


def test_nodata_of_a_geotiff_image_is_invalid(tmp_path):
    root = fx.write_dataset(tmp_path / "tif", "tif")
    image = fx.scene(99)[0]
    data = np.stack([image[k] for k in ("red", "green", "blue", "nir", "dem")])
    data[3, 5:7, 5:9] = -9999.0  # nir no-data: 8 pixels invalid for rgbn, slope's DEM untouched
    (root / "test" / "images" / "patch_1.tif").unlink()
    fx.write_tif(root / "test" / "images" / "patch_1.tif", data, nodata=-9999.0)
    valid = ready(root).data.test_split.valid[0]
    assert int((~valid).sum()) == 8 and not valid[5:7, 5:9].any()


# ---------------------------------------------------------------- the split drawn from train/


def test_split_from_train_is_seeded_deterministic_and_recorded(tmp_path):
    root = fx.write_dataset(tmp_path / "npy", "npy", counts={"train": 10})
    first, again, other = (ready(root, seed=s).split for s in (3, 3, 4))
    assert first == again and first != other
    assert first["drawn_from_train"] == ["val", "test"] and (first["ratio"], first["seed"]) == ("3:1:1", 3)
    assert first["patches"] == {"train": 6, "val": 2, "test": 2}
    assert not set(first["val"]) & set(first["test"])
    dm = ready(root, seed=3)
    assert set(dm.data.test_split.names) == set(first["test"])
    assert ready(root, seed=4, split_seed=3).split == first  # a seed sweep can keep one split
    assert draw_split(10, ("val", "test"), 3, root) == draw_split(10, ("val", "test"), 3, root)
    assert sorted(sum(draw_split(10, ("val", "test"), 3, root).values(), [])) == list(range(10))
    assert {k: len(v) for k, v in draw_split(8, ("val",), 0, root).items()} == {"val": 2, "train": 6}  # 3:1


# ---------------------------------------------------------------- windows the dataset declares


def test_declared_windows_are_accepted_and_others_refused(tmp_path):
    root = fx.write_dataset(tmp_path / "tif", "tif")
    dm = PatchFolderDataModule(str(root), window=16, channels=RGBN_SLOPE)
    cfg = OmegaConf.create({"window": 16})
    with pytest.raises(InputError, match="window"):
        check_choices(cfg, dm.windows)  # the paper's 32, 64, 128 by default
    spec = (root / "dataset.yaml").read_text()
    (root / "dataset.yaml").write_text(spec + "windows: [16, 32]\n")
    dm = ready(root, window=16)
    check_choices(cfg, dm.windows)
    assert len(dm.data.test) == 2 * 4 and dm.data.test.origins[1].tolist() == [0, 0, 16]


# ---------------------------------------------------------------- bad input: one line each


def _rewrite_image(root: Path, data: np.ndarray) -> None:
    (root / "train" / "images" / "patch_2.tif").unlink()
    fx.write_tif(root / "train" / "images" / "patch_2.tif", data)


def _rewrite_mask(root: Path, data: np.ndarray) -> None:
    (root / "val" / "masks" / "patch_1.tif").unlink()
    fx.write_tif(root / "val" / "masks" / "patch_1.tif", data)


BAD_INPUTS = {
    "missing dataset.yaml": (lambda r: (r / "dataset.yaml").unlink(), {}, ["dataset.yaml", "missing"]),
    "channel it cannot give": (lambda r: None, {"channels": ["red", "swir16"]},
                               ["dataset.yaml", "no swir16 channel", "gives red, green, blue, nir, dem, slope"]),
    "ndvi without nir": (lambda r: fx.write_spec(r, channels=["red", "green", "blue", "dem"], pixel_size=10),
                         {"channels": ["ndvi"]}, ["dataset.yaml", "no nir channel (channel ndvi needs nir)"]),
    "slope without pixel size": (lambda r: fx.write_spec(r, channels=["red", "green", "blue", "nir", "dem"]),
                                 {}, ["dataset.yaml", "slope", "pixel_size"]),
    "slope without dem": (lambda r: fx.write_spec(r, channels=["red", "green", "blue", "nir", "ndvi"]), {},
                          ["dataset.yaml", "no dem channel (channel slope needs dem)"]),
    "pre-event input": (lambda r: None, {"channels": ["red", "dndvi"]}, ["dataset.yaml", "no pre-event image"]),
    "channel count": (lambda r: _rewrite_image(r, np.zeros((3, 32, 32), np.float32)), {},
                      ["train/images/patch_2.tif", "has 3 channel(s)", "lists 5"]),
    "patch of another size": (lambda r: _rewrite_image(r, np.zeros((5, 16, 16), np.float32)), {},
                              ["train/images/patch_2.tif", "16 x 16 px", "32 x 32 px"]),
    "mask of another size": (lambda r: _rewrite_mask(r, np.zeros((16, 32), np.uint8)), {},
                             ["val/masks/patch_1.tif", "mask is 16 x 32 px", "image 32 x 32 px"]),
    "mask of 0/255": (lambda r: _rewrite_mask(r, np.full((32, 32), 255, np.uint8)), {},
                      ["val/masks/patch_1.tif", "mask value 255", "neither landslide nor background", "'labels'"]),
    "empty split": (lambda r: [p.unlink() for p in (r / "test" / "images").iterdir()], {},
                    ["test/images", "empty split"]),
    "missing train": (lambda r: shutil.rmtree(r / "train"), {}, ["train", "missing"]),
    "missing masks folder": (lambda r: shutil.rmtree(r / "val" / "masks"), {}, ["val/masks", "missing"]),
    "unknown format": (lambda r: (r / "train" / "images" / "patch_9.bmp").write_bytes(b"x"), {},
                       ["train/images/patch_9.bmp", "unknown format .bmp"]),
    "image without mask": (lambda r: (r / "test" / "masks" / "patch_2.tif").unlink(), {},
                           ["test/images/patch_2.tif", "has no mask"]),
    "not a raster": (lambda r: (r / "train" / "images" / "patch_1.tif").write_text("not a tiff"), {},
                     ["train/images/patch_1.tif", "cannot read"]),
    "unknown key": (lambda r: fx.write_spec(r, channels=["red"], pixelsize=10), {}, ["dataset.yaml", "pixelsize"]),
    "unknown units": (lambda r: fx.write_spec(r, channels=["red"], units="dn"), {}, ["dataset.yaml", "'units'"]),
    "unknown channel": (lambda r: fx.write_spec(r, channels=["red", "B13"]), {}, ["dataset.yaml", "'B13'"]),
    "digital numbers as floats": (lambda r: fx.write_spec(r, channels=["red", "green", "blue", "nir", "dem"],
                                                          pixel_size=10, scale=1000), {},
                                  ["patch_1.tif", "cannot be reflectance", "scale"]),
    "window does not tile": (lambda r: None, {"window": 64}, ["window 64 px does not tile the 32 x 32 px"]),
    "scenario": (lambda r: None, {"train_sites": ["taiwan"]}, ["only scenario=all applies", "taiwan"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_error(tmp_path, case):
    root = fx.write_dataset(tmp_path / "ds", "tif")
    damage, kwargs, expected = BAD_INPUTS[case]
    damage(root)
    with pytest.raises(InputError) as err:
        ready(root, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_brightness_of_16_bits_needs_a_scale(tmp_path):
    zero = np.zeros((8, 8), np.uint8)
    for split in ("train", "val", "test"):
        fx.write_png(tmp_path / split / "images" / "a.png", np.full((3, 8, 8), 4000, np.uint16))
        fx.write_png(tmp_path / split / "masks" / "a.png", zero)
    fx.write_spec(tmp_path, channels=["red", "green", "blue"], units="brightness", windows=[8])
    with pytest.raises(InputError, match=r"train/images/a.png: uint16 brightness has no default scale.*'scale'"):
        ready(tmp_path, window=8, channels=["red"])
