"""HDF5 patch folders in data=patches: both array layouts inferred by `slidemap dataset` and trained end to end;
the same arrays as NumPy and as HDF5 give the same inputs; ``h5_key`` for files with several datasets; the
Landslide4Sense release read as a plain patch folder gives its dedicated reader's values; bad input one line."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import l4s_fixtures as l4s
import patch_fixtures as fx
from conftest import TINY_TRAINING, TINY_UNET, compose_config, run_training
from slidemap.cli import main
from slidemap.data.patchsets.files import load_spec
from slidemap.data.patchsets.folder import PatchFolderDataModule, pair_reader
from slidemap.data.patchsets.landslide4sense import read_split
from slidemap.errors import InputError

RGBN = ["red", "green", "blue", "nir"]
COUNTS = {"train": 6, "val": 2, "test": 2}


def write_h5(path: Path, **datasets: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f.create_dataset(name, data=data)
    return path


def read_h5(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[key][()]


def write_h5_patches(root: Path, hwc: bool, counts: dict[str, int] | None = None) -> Path:
    """``{train,val,test}/{images,masks}/image_N.h5`` ('img': float32 reflectance red, green, blue, nir, stored
    (H, W, C) or (C, H, W)) and ``mask_N.h5`` ('mask': uint8 0/1); no dataset.yaml, as a release ships."""
    seed = 0
    for split, n in (counts or COUNTS).items():
        for i in range(n):
            bands, mask = fx.scene(seed := seed + 1)
            img = np.stack([bands[k] for k in RGBN], axis=-1 if hwc else 0)
            write_h5(root / split / "images" / f"image_{i}.h5", img=img)
            write_h5(root / split / "masks" / f"mask_{i}.h5", mask=mask)
    return root


def infer_and_write(capsys, root: Path) -> tuple[dict, str]:
    assert main(["dataset", str(root), "--write"]) == 0
    out = capsys.readouterr().out
    text = (root / "dataset.yaml").read_text()
    assert text == out
    return yaml.safe_load(text), text


def ready(root: Path, **kwargs) -> PatchFolderDataModule:
    dm = PatchFolderDataModule(str(root), **{"window": 32, "channels": RGBN, **kwargs})
    dm.setup()
    return dm


# ---------------------------------------------------------------- both layouts: inferred, trained, scored


@pytest.mark.parametrize("hwc", [False, True], ids=["chw", "hwc"])
def test_an_h5_folder_is_inferred_then_trains_and_is_scored(tmp_path, capsys, hwc):
    root = write_h5_patches(tmp_path / "h5", hwc)
    meta, text = infer_and_write(capsys, root)
    assert meta["splits"] == {"train": "train", "val": "val", "test": "test"}
    assert (meta["images"], meta["masks"], meta["pairing"]) == ("images", "masks", "number")  # image_N / mask_N
    assert meta.get("npy_layout") == ("hwc" if hwc else None)
    assert meta["units"] == "reflectance" and "scale" not in meta  # float32 reflectance, median ~0.1
    assert meta["labels"] == {"landslide": [1], "background": [0]}
    assert "channels" not in meta and "# channels: [red, green, blue, nir]" in text  # 4 unnamed bands: a guess
    assert "HDF5 float32 (dataset img), 4 band(s)" in text
    masks = np.stack([read_h5(p, "mask") for s in COUNTS for p in sorted((root / s / "masks").iterdir())])
    assert f"# landslide: {100 * masks.sum() / masks.size:.3g}% of labelled pixels" in text
    (root / "dataset.yaml").write_text(text.replace("# channels:", "channels:"))  # step 2: the user confirms

    cfg = compose_config("train", tmp_path / "run", ["data=patches", f"data.root={root}", "window=32",
                                                     "inputs.channels=[red,green,blue,nir]", *TINY_TRAINING,
                                                     TINY_UNET])
    metrics = json.loads((run_training(cfg) / "metrics.json").read_text())
    scores = metrics["areas"]["h5"]
    assert all(0.0 <= scores[k] <= 1.0 for k in ("precision", "recall", "f1"))
    positives = sum(int(read_h5(p, "mask").sum()) for p in (root / "test" / "masks").iterdir())
    assert scores["tp"] + scores["fn"] == positives  # every test landslide pixel scored once


# ---------------------------------------------------------------- values: the same as NumPy, by hand


def test_the_same_arrays_as_numpy_and_as_h5_give_the_same_inputs(tmp_path):
    h5 = write_h5_patches(tmp_path / "h5", hwc=True)
    npy = tmp_path / "npy"
    for path in h5.rglob("*.h5"):
        key = "img" if path.parent.name == "images" else "mask"
        fx.write_npy(npy / path.relative_to(h5).with_suffix(".npy"), read_h5(path, key))
    for root in (h5, npy):
        fx.write_spec(root, channels=RGBN, npy_layout="hwc", pairing="number")
    a, b = ready(h5), ready(npy)
    assert a.checkpoint_info()["normaliser"] == b.checkpoint_info()["normaliser"]
    for role in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a.data, role).x, getattr(b.data, role).x)
    np.testing.assert_array_equal(a.data.test_split.y, b.data.test_split.y)
    assert a.data.test_split.names == b.data.test_split.names == ("image_0", "image_1")


def test_integer_dn_boolean_masks_and_a_per_channel_scale_by_hand(tmp_path):
    for split in ("train", "val", "test"):
        write_h5(tmp_path / split / "images" / "a.h5", img=np.full((8, 8, 2), (1200, 30), np.uint16))
        mask = np.zeros((8, 8), bool)
        mask[2:4, 3:6] = True
        write_h5(tmp_path / split / "masks" / "a.h5", m=mask)
    fx.write_spec(tmp_path, channels=["nir", "dem"], windows=[8])  # (8, 8, 2) read as (C, H, W): refused
    with pytest.raises(InputError, match=r"train/images/a.h5: array is \(8, 8, 2\).*'npy_layout: hwc'"):
        ready(tmp_path, window=8, channels=["nir"])
    fx.write_spec(tmp_path, channels=["nir", "dem"], npy_layout="hwc", windows=[8])
    dm = ready(tmp_path, window=8, channels=["nir", "dem"])
    assert dm.checkpoint_info()["normaliser"]["mean"] == pytest.approx([0.12, 30.0])  # DN / 10000; metres as stored
    assert int(dm.data.test_split.y.sum()) == 6
    fx.write_spec(tmp_path, channels=["nir", "dem"], npy_layout="hwc", windows=[8], scale=[0.0002, 0.5])
    dm = ready(tmp_path, window=8, channels=["nir", "dem"])
    assert dm.checkpoint_info()["normaliser"]["mean"] == pytest.approx([0.24, 15.0])  # each channel its factor


# ---------------------------------------------------------------- several datasets: h5_key


def test_several_datasets_are_listed_until_h5_key_names_one(tmp_path, capsys):
    root = write_h5_patches(tmp_path / "h5", hwc=False)
    for path in (root / "train" / "images").iterdir():
        img = read_h5(path, "img")
        write_h5(path, **{"meta/bounds": np.arange(4.0), "data/img": img})
    assert main(["dataset", str(root)]) == 2
    out, err = capsys.readouterr()
    assert "train/images/image_0.h5: holds 2 datasets ('data/img', 'meta/bounds'): name the image array with " \
           "'h5_key: {images: NAME}' in dataset.yaml" in out
    assert err.count("\n") == 1 and "6 problem(s)" in err  # one per train image, nothing else
    (root / "dataset.yaml").write_text("h5_key: {images: data/img}\n")
    for path in (root / "val" / "images").iterdir():  # the named dataset, in every file
        write_h5(path, **{"data/img": read_h5(path, "img")})
    for path in (root / "test" / "images").iterdir():
        write_h5(path, **{"data/img": read_h5(path, "img")})
    meta, text = infer_and_write(capsys, root)  # a dataset.yaml holding only h5_key is replaced without --force
    assert meta["h5_key"] == {"images": "data/img"} and "# channels: [red, green, blue, nir]" in text
    (root / "dataset.yaml").write_text(text.replace("# channels:", "channels:"))
    assert load_spec(root).h5.images == "data/img" and len(ready(root).data.test_split) == 2


# ---------------------------------------------------------------- the Landslide4Sense release as a patch folder


def test_the_l4s_release_read_as_patches_gives_the_dedicated_readers_values(tmp_path, capsys):
    root = l4s.write_l4s(tmp_path / "l4s")
    meta, _ = infer_and_write(capsys, root)
    assert meta["splits"] == {"train": "TrainData", "val": "ValidData", "test": "TestData"}
    assert (meta["images"], meta["masks"], meta["pairing"], meta["npy_layout"]) == ("img", "mask", "number", "hwc")
    assert meta["channels"] == [f"B{i}" for i in range(1, 13)] + ["slope", "dem"]
    means = np.asarray(l4s.AUTHORS_MEANS)
    np.testing.assert_allclose(meta["scale"], np.r_[means[:12] * 1e-4, means[12:]], rtol=1e-12)
    assert meta["units"] == "reflectance" and meta["labels"] == {"landslide": [1], "background": [0]}

    inputs = ("red", "green", "blue", "nir", "slope", "dem", "ndvi")
    spec = load_spec(root)
    read = pair_reader(spec, inputs, (128, 128))
    for split, n in l4s.COUNTS.items():
        dedicated = read_split(root, split, inputs)
        for i in range(n):
            number = i + 1
            x, y, valid, _ = read(root / split / "img" / f"image_{number}.h5",
                                  root / split / "mask" / f"mask_{number}.h5")
            np.testing.assert_allclose(x, dedicated.x[i], rtol=2e-6, atol=1e-6)
            np.testing.assert_array_equal(valid, dedicated.valid[i])
            np.testing.assert_array_equal(y, dedicated.y[i])
    stored = l4s.read_h5(root / "TestData" / "img" / "image_2.h5", "img")  # red is B4, stored index 3
    x = read(root / "TestData" / "img" / "image_2.h5", root / "TestData" / "mask" / "mask_2.h5")[0]
    assert x[0, 5, 7] == pytest.approx(stored[5, 7, 3] * 445.17289745 / 10000, rel=1e-6)
    assert x[5, 5, 7] == pytest.approx(stored[5, 7, 13] * 772.83144788, rel=1e-6)  # DEM in metres
    test = read(root / "TestData" / "img" / "image_1.h5", root / "TestData" / "mask" / "mask_1.h5")
    assert not test[2][0:5].any() and test[2][5:].all()  # B4 NaN in rows 0-4; B1's NaN (row 10) not read


# ---------------------------------------------------------------- bad input: one line naming the file


def _images(root: Path) -> Path:
    return root / "train" / "images" / "image_1.h5"


BAD = {
    "several datasets": (lambda r: write_h5(_images(r), img=np.zeros((4, 32, 32)), qa=np.zeros((32, 32))), {},
                         ["train/images/image_1.h5", "holds 2 datasets ('img', 'qa')", "'h5_key: {images: NAME}'"]),
    "named dataset missing": (lambda r: None, {"h5_key": {"images": "image"}},
                              ["train/images/image_0.h5", "no dataset 'image'", "'h5_key' for images", "'img'"]),
    "mask dataset missing": (lambda r: None, {"h5_key": "img"},
                             ["train/masks/mask_0.h5", "no dataset 'img'", "'h5_key' for masks", "'mask'"]),
    "four dimensions": (lambda r: write_h5(_images(r), img=np.zeros((1, 4, 32, 32))), {},
                        ["train/images/image_1.h5", "'img' is 4-d (1, 4, 32, 32)"]),
    "not numeric": (lambda r: write_h5(_images(r), img=np.full((4, 32, 32), b"x", "S1")), {},
                    ["train/images/image_1.h5", "'img' is |S1: an image must be a numeric array"]),
    "corrupt file": (lambda r: _images(r).write_bytes(b"\x89HDF\r\n\x1a\n" + b"x" * 100), {},
                     ["train/images/image_1.h5", "cannot read HDF5 file"]),
    "empty file": (lambda r: write_h5(_images(r)), {}, ["train/images/image_1.h5", "holds no dataset"]),
    "layout": (lambda r: write_h5(_images(r), img=np.zeros((32, 32, 4), np.float32)), {},
               ["train/images/image_1.h5", "looks (H, W, C)", "'npy_layout: hwc'"]),
    "bad h5_key": (lambda r: None, {"h5_key": ["img"]}, ["dataset.yaml", "'h5_key' names the dataset"]),
    "scale list length": (lambda r: None, {"scale": [1.0, 1.0]},
                          ["dataset.yaml", "'scale' lists 2 factor(s) for 4 channel(s)"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_h5_input_is_one_line_naming_the_file(tmp_path, capsys, case):
    root = write_h5_patches(tmp_path / "h5", hwc=False)
    damage, extra, expected = BAD[case]
    damage(root)
    fx.write_spec(root, channels=RGBN, pairing="number", **extra)
    with pytest.raises(InputError) as err:
        ready(root)
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
