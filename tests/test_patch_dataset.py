"""Public patch datasets as published: `slidemap dataset` infers their dataset.yaml (checked against values read
by hand from the files), data=patches trains and scores each, unlabelled pixels count nowhere, and every bad input
is one line naming the file and the key."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from rasterio.errors import NotGeoreferencedWarning

import patch_fixtures as fx
from conftest import TINY_TRAINING, TINY_UNET, compose_config, run_training
from slidemap.cli import main
from slidemap.data.patchsets.folder import PatchFolderDataModule
from slidemap.data.patchsets.layout import find_layout, plan_pairs
from slidemap.data.patchsets.stream import standardise_patch
from slidemap.errors import InputError
from slidemap.evaluation.scoring import confusion_counts
from slidemap.mapping.checkpoint import load_checkpoint
from slidemap.mapping.ensemble import Ensemble
from slidemap.mapping.mosaic import predict_mosaic
from slidemap.training.module import masked_bce

REAL = Path(__file__).parent / "data" / "real"


def read(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read()


def copy_real(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(REAL / name, root)
    return root


def infer_and_write(capsys, root: Path) -> tuple[dict, str]:
    assert main(["dataset", str(root), "--write"]) == 0
    out = capsys.readouterr().out
    text = (root / "dataset.yaml").read_text()
    assert text == out  # what it prints is what it writes
    return yaml.safe_load(text), text


def colours(mask: np.ndarray) -> dict[tuple[int, int, int], int]:
    values, counts = np.unique(mask[:3].reshape(3, -1).T, axis=0, return_counts=True)
    return {tuple(int(v) for v in value): int(n) for value, n in zip(values, counts)}


# ---------------------------------------------------------------- the inferred dataset.yaml, by hand


def test_arcgis_export_is_inferred_and_its_guesses_left_to_the_user(tmp_path, capsys):
    root = copy_real(tmp_path, "bangladesh_s2_arcgis")
    meta, text = infer_and_write(capsys, root)
    labels = np.concatenate([read(p)[0].ravel() for p in sorted((root / "labels").glob("*.tif"))])
    assert set(np.unique(labels).tolist()) == {0, 1, 2}  # Classified Tiles: 0 unlabelled, classes 1 and 2
    image = read(root / "images" / "000000000046.tif")
    assert image.dtype == np.float64 and 100 < np.median(image[image > 0]) < 10000  # digital numbers
    assert meta["splits"] == {"train": "."} and (meta["images"], meta["masks"], meta["pairing"]) == \
        ("images", "labels", "stem")
    assert meta["units"] == "reflectance" and meta["scale"] == 0.0001 and meta["nodata"] == 0
    assert meta["pixel_size"] == pytest.approx(8.9831528411960849e-05 * 111319.49, abs=1e-3)  # the .emd's 10 m
    assert meta["labels"] == {"background": [1], "unlabelled": [0]}
    assert "channels" not in meta and "# channels: [red, green, blue, nir]" in text
    assert "  # landslide: [2]  # GUESS" in text and "#   labels.landslide" in text and "#   channels" in text
    assert "map.txt lists 4 pairs, 4 found" in text
    share = 100 * int((labels == 2).sum()) / int(((labels == 1) | (labels == 2)).sum())
    assert f"# landslide: {share:.3g}% of labelled pixels" in text
    with pytest.raises(InputError, match=r"dataset.yaml: 'channels' must list"):  # training stops on the guess
        PatchFolderDataModule(str(root), window=128, channels=["red"]).setup()


def test_nepal_colour_masks_resized_edges_are_unlabelled(tmp_path, capsys):
    root = copy_real(tmp_path, "nepal_rgb_colour_masks")
    meta, text = infer_and_write(capsys, root)
    counts: dict = {}
    for path in (root / "mask").glob("*.png"):
        for colour, n in colours(read(path)).items():
            counts[colour] = counts.get(colour, 0) + n
    ranked = sorted(counts, key=counts.get, reverse=True)
    assert ranked[:2] == [(0, 0, 0), (200, 128, 0)] and len(counts) > 10  # black, the landslide, edge blends
    assert meta == {"splits": {"train": "."}, "images": "img", "masks": "mask", "pairing": "stem",
                    "channels": ["red", "green", "blue"], "units": "brightness",
                    "labels": {"landslide": [[200, 128, 0]], "background": [[0, 0, 0]], "unlabelled": "other"}}
    assert f"{len(counts) - 2} faint colours" in text


def test_sichuan_pairs_by_number_and_is_stretched(tmp_path, capsys):
    root = copy_real(tmp_path, "sichuan_aerial_colour_masks")
    meta, text = infer_and_write(capsys, root)
    mask = colours(read(root / "mask" / "LandslideLabel010.png"))
    assert set(mask) == {(0, 0, 0), (255, 0, 255)}
    image = read(root / "img" / "Landslide010.png")
    stretched = all(band.min() == 0 and band.max() == 255 for band in image)
    assert meta["pairing"] == "number" and (meta["images"], meta["masks"]) == ("img", "mask")
    assert meta["labels"] == {"landslide": [[255, 0, 255]], "background": [[0, 0, 0]]}
    assert (meta.get("normalise") == "per_patch") == stretched
    share = 100 * mask[(255, 0, 255)] / sum(mask.values())
    assert f"# landslide: {share:.3g}% of labelled pixels" in text


def test_landslide4sense_png_layout(tmp_path, capsys):
    root = fx.write_l4s_png(tmp_path / "l4s")
    meta, _ = infer_and_write(capsys, root)
    assert meta["splits"] == {"train": "train", "val": "validation", "test": "test"}
    assert (meta["pairing"], meta["channels"], meta["normalise"]) == ("number", ["red", "green", "blue"],
                                                                     "per_patch")
    assert meta["labels"] == {"landslide": [255], "background": [0]}


# ---------------------------------------------------------------- each format trains and is scored


def _landslide_pixels(root: Path, meta: dict, names: list[str]) -> int:
    """Labelled landslide pixels of the named test patches whose image is valid, counted from the files."""
    total = 0
    masks = {p.stem: p for p in (root / meta["masks"]).iterdir() if not p.name.endswith((".xml", ".tfw"))}
    for name in names:
        number = int("".join(c for c in name if c.isdigit())[-3:]) if meta["pairing"] == "number" else None
        mask_path = masks[name] if number is None else next(p for s, p in masks.items() if s.endswith(f"{number:03d}"))
        mask = read(mask_path)
        image = read(next((root / meta["images"]).glob(f"{name}.*")))
        slide = meta["labels"]["landslide"][0]
        hit = (mask[0] == slide) if isinstance(slide, int) else np.all(mask[:3] == np.array(slide)[:, None, None], 0)
        valid = ~(image == meta.get("nodata", -1)).all(axis=0)
        total += int((hit & valid).sum())
    return total


@pytest.mark.parametrize("name, inputs", [("bangladesh_s2_arcgis", "[red,green,blue,nir]"),
                                          ("nepal_rgb_colour_masks", "[red,green,blue]"),
                                          ("sichuan_aerial_colour_masks", "[red,green,blue]")])
def test_each_real_sample_trains_and_is_scored(tmp_path, capsys, name, inputs):
    root = copy_real(tmp_path, name)
    meta, text = infer_and_write(capsys, root)
    if name == "bangladesh_s2_arcgis":  # what `slidemap dataset` could not infer, set as a user would
        text = text.replace("# channels:", "channels:").replace("  # landslide: [2]", "  landslide: [2]")
    if name != "nepal_rgb_colour_masks":  # 1 pair (Sichuan), or 1 tile with landslides (Bangladesh): all three roles
        text = text.replace("splits: {train: .}", "splits: {train: ., val: ., test: .}")
    (root / "dataset.yaml").write_text(text)
    meta = yaml.safe_load(text)
    cfg = compose_config("train", tmp_path / "run", ["data=patches", f"data.root={root}", "window=128",
                                                     f"inputs.channels={inputs}", *TINY_TRAINING, TINY_UNET])
    metrics = json.loads((run_training(cfg) / "metrics.json").read_text())
    scores = metrics["areas"][name]
    split = metrics["split"]
    tests = split.get("test") or [p.stem for p in (root / meta["images"]).iterdir() if p.suffix in (".png", ".tif")]
    assert scores["tp"] + scores["fn"] == _landslide_pixels(root, meta, tests) > 0
    assert 0.0 <= scores["f1"] <= 1.0


def test_l4s_layout_trains_with_per_patch_normalisation(tmp_path, capsys):
    root = fx.write_l4s_png(tmp_path / "l4s")
    infer_and_write(capsys, root)
    cfg = compose_config("train", tmp_path / "run", ["data=patches", f"data.root={root}", "window=32",
                                                     "inputs.channels=[red,green,blue]", *TINY_TRAINING, TINY_UNET])
    metrics = json.loads((run_training(cfg) / "metrics.json").read_text())
    positives = sum(int((read(root / "test" / "masks" / f"mask_{i}.png")[0] == 255).sum()) for i in range(2))
    scores = metrics["areas"]["l4s"]
    assert scores["tp"] + scores["fn"] == positives
    hp = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)["hyper_parameters"]
    info = hp["data_info"]
    assert info["normalise"] == "per_patch" and info["units"] == ["brightness"] * 3
    assert 0.0 <= info["distribution"]["mean"][0] <= 1.0  # recorded in physical units, before standardising
    model = load_checkpoint(Path(metrics["best_checkpoint"]))
    assert model.per_patch and model.patch_size == 32 and info["patch_size"] == [32, 32]
    # a scene of two test patches side by side maps each 32 px tile standardised on its own, as in training
    streamed = PatchFolderDataModule(str(root), window=32, channels=["red", "green", "blue"], stream=True)
    streamed.setup()
    patches = [streamed.data.test.read(*pair) for pair in streamed.data.test.pairs[:2]]
    raw = np.concatenate([x for x, *_ in patches], axis=2)
    seen = np.concatenate([s for *_, s in patches], axis=1)
    ensemble = Ensemble([model])
    mapped = predict_mosaic(ensemble, model.normaliser(raw, seen), seen, ensemble.map_tile(None, 32), mode="grid")
    as_trained = np.stack([model.normaliser(standardise_patch(x, s), s) for x, *_, s in patches])
    expected, _ = ensemble(as_trained)
    np.testing.assert_allclose(mapped, np.where(seen, np.concatenate(list(expected), axis=1), np.nan), atol=1e-5)
    with pytest.raises(InputError, match="maps in tiles of 32 px, not 64"):
        ensemble.map_tile(64, 32)


# ---------------------------------------------------------------- layouts and pairings as published


@pytest.mark.parametrize("image, mask", [("image_12.png", "mask_12.png"), ("img_12.png", "label_12.png"),
                                         ("12.png", "12_mask.png"), ("Landslide012.png", "LandslideLabel012.png")])
def test_pairing_by_number_whatever_the_prefix_or_suffix(tmp_path, image, mask):
    for folder, name in (("images", image), ("labels", mask)):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_bytes(b"")
        (tmp_path / folder / name.replace("12", "3")).write_bytes(b"")
    layout, notes = find_layout(tmp_path)
    assert (layout.splits, layout.images, layout.masks, layout.pairing) == ({"train": "."}, "images", "labels",
                                                                            "number")
    pairs, problems = plan_pairs(tmp_path, layout)
    assert not problems and [(i.name, m.name) for i, m in pairs["train"]] == [
        (image.replace("12", "3"), mask.replace("12", "3")), (image, mask)]  # natural order: 3 before 12


@pytest.mark.parametrize("val", ["val", "valid", "validation"])
def test_split_folder_names(tmp_path, val):
    for split in ("train", val, "test"):
        for folder in ("img", "mask"):
            (tmp_path / split / folder).mkdir(parents=True)
            (tmp_path / split / folder / "1.png").write_bytes(b"")
    layout, _ = find_layout(tmp_path)
    assert layout.splits == {"train": "train", "val": val, "test": "test"} and layout.pairing == "stem"
    assert (layout.images, layout.masks) == ("img", "mask")


# ---------------------------------------------------------------- unlabelled pixels: no loss, no score


def test_unlabelled_pixels_take_no_part_in_loss_or_scores(tmp_path):
    # 4 x 4 masks: 2 landslide, 1 background, 0 unlabelled. Test mask: 3 landslide, 5 background, 8 unlabelled.
    mask = np.array([[2, 2, 2, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint8)
    image = np.stack([np.full((4, 4), 500.0), np.full((4, 4), 900.0)])
    for split in ("train", "val", "test"):
        fx.write_tif(tmp_path / split / "images" / "a.tif", image)
        fx.write_tif(tmp_path / split / "labels" / "a.tif", mask)
    fx.write_spec(tmp_path, channels=["red", "nir"], scale=0.0001, windows=[4], masks="labels",
                  labels={"landslide": [2], "background": [1], "unlabelled": [0]})
    dm = PatchFolderDataModule(str(tmp_path), window=4, channels=["red", "nir"])
    dm.setup()
    test = dm.data.test
    assert int(test.valid.sum()) == 8 and int(test.y.sum()) == 3
    pred = np.ones((1, 4, 4), bool)  # predicts landslide everywhere: TP 3, FP 5, FN 0, TN 0 on labelled pixels
    assert confusion_counts(pred, test.y, test.valid) == {"tp": 3, "fp": 5, "fn": 0, "tn": 0}
    logits = torch.zeros(1, 4, 4)
    logits[0, 2:] = 50.0  # wildly wrong on unlabelled pixels: must not change the loss
    loss = masked_bce(logits, torch.from_numpy(test.y).float(), torch.from_numpy(test.valid))
    assert float(loss) == pytest.approx(np.log(2.0), rel=1e-6)  # BCE of logit 0 over the 8 labelled pixels


def test_per_patch_standardisation_by_hand():
    x = np.array([[[1.0, 3.0], [5.0, 100.0]]], np.float32)
    valid = np.array([[True, True], [True, False]])
    out = standardise_patch(x, valid)  # mean 3, std sqrt(8/3) over the three valid pixels
    np.testing.assert_allclose(out[0], [[-2 / np.sqrt(8 / 3), 0.0], [2 / np.sqrt(8 / 3), 0.0]], rtol=1e-6)


# ---------------------------------------------------------------- bad input: one line, the file and the key


def _l4s(tmp_path: Path, **changes) -> Path:
    root = fx.write_l4s_png(tmp_path / "l4s")
    spec = {"splits": {"train": "train", "val": "validation", "test": "test"}, "pairing": "number",
            "channels": ["red", "green", "blue"], "units": "brightness",
            "labels": {"landslide": [255], "background": [0]}, **changes}
    fx.write_spec(root, **spec)
    return root


def _npy_hwc(root: Path) -> None:
    (root / "dataset.yaml").write_text((root / "dataset.yaml").read_text().replace("npy_layout: hwc\n", ""))


def _broken_link(root: Path) -> None:
    (root / "train" / "masks" / "patch_3.npy").unlink()
    (root / "train" / "masks" / "patch_3.npy").symlink_to(root / "nowhere.npy")


def _test_all_nan(root: Path) -> None:
    for path in (root / "test" / "images").iterdir():
        np.save(path, np.full_like(np.load(path), np.nan))


BAD = {
    "pairing leaves images without masks": (
        lambda t: _l4s(t, pairing="stem"), ["train/images/image_0.png", "has no mask", "'pairing: stem'",
                                            "6 of 6 image(s)", "image_0.png, image_1.png, image_2.png, ..."]),
    "colour neither landslide nor background": (
        lambda t: _l4s(t, labels={"landslide": [[255, 255, 255]], "background": [[9, 9, 9]]}),
        ["mask colour [0, 0, 0]", "'labels'"]),
    "labels value never seen": (
        lambda t: _l4s(t, labels={"landslide": [255, 128], "background": [0]}),
        ["dataset.yaml", "labels.landslide 128 occurs in no mask"]),
    "npy stored (H, W, C) without npy_layout": (
        lambda t: _npy_hwc(fx.write_dataset(t / "npy", "npy")) or t / "npy",
        ["train/images/patch_1.npy", "npy_layout: hwc"]),
    "broken link": (lambda t: _broken_link(fx.write_dataset(t / "npy", "npy")) or t / "npy",
                    ["train/masks/patch_3.npy", "broken link"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_file_and_key(tmp_path, case):
    make, expected = BAD[case]
    root = make(tmp_path)
    with pytest.raises(InputError) as err:
        PatchFolderDataModule(str(root), window=32, channels=["red", "green", "blue"]).setup()
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_test_split_without_a_valid_pixel_is_named(tmp_path):
    root = fx.write_dataset(tmp_path / "npy", "npy")
    _test_all_nan(root)
    with pytest.raises(InputError, match=r"test: the test split has no valid labelled pixel"):
        PatchFolderDataModule(str(root), window=32, channels=["red", "green", "blue"]).setup()


def test_dataset_command_lists_every_problem_and_writes_nothing(tmp_path, capsys):
    root = fx.write_l4s_png(tmp_path / "l4s")
    (root / "train" / "masks" / "mask_1.png").unlink()  # an image without mask
    (root / "test" / "images" / "image_9.bmp").write_bytes(b"x")  # an unknown format
    fx.write_png(root / "validation" / "masks" / "mask_0.png", np.zeros((3, 16, 16), np.uint8))  # wrong size
    assert main(["dataset", str(root), "--write"]) == 2
    out, err = capsys.readouterr()
    assert "# problems (3;" in out and err.count("\n") == 1 and "3 problem(s)" in err
    for part in ("train/images/image_1.png: has no mask", "image_9.bmp: unknown format .bmp",
                 "validation/masks/mask_0.png: mask is 16 x 16 px, its image 32 x 32 px"):
        assert part in out
    assert not (root / "dataset.yaml").exists()


def test_write_refuses_a_differing_dataset_yaml_unless_forced(tmp_path, capsys):
    root = fx.write_l4s_png(tmp_path / "l4s")
    (root / "dataset.yaml").write_text("channels: [red]\n")
    assert main(["dataset", str(root), "--write"]) == 2
    assert "exists and differs" in capsys.readouterr().err
    assert (root / "dataset.yaml").read_text() == "channels: [red]\n"
    assert main(["dataset", str(root), "--write", "--force"]) == 0
    assert "pairing: number" in (root / "dataset.yaml").read_text()
    assert main(["dataset", str(root), "--write"]) == 0  # the same text again: nothing to refuse


def test_jpeg_images_and_rgba_with_opaque_alpha(tmp_path):
    for split in ("train", "val", "test"):
        bands, mask = fx.scene(3)
        rgb = np.clip(np.stack([bands[k] for k in ("red", "green", "blue")]) / 0.25 * 255, 0, 255).astype(np.uint8)
        path = tmp_path / split / "images" / "p_1.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path, "w", driver="JPEG", width=32, height=32, count=3, dtype="uint8") as dst:
                dst.write(rgb)
        fx.write_png(tmp_path / split / "masks" / "p_1.png", np.stack([mask * 255] * 3 + [np.full_like(mask, 255)]))
    fx.write_spec(tmp_path, channels=["red", "green", "blue"], units="brightness",
                  labels={"landslide": [255], "background": [0]})
    dm = PatchFolderDataModule(str(tmp_path), window=32, channels=["red", "green", "blue"])
    dm.setup()
    assert int(dm.data.test.y.sum()) == int(mask.sum()) and dm.data.test.valid.all()
