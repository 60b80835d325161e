"""``experiment=real_patches``: the recommended recipe trains on each real sample from its inferred dataset.yaml
with one command, the dataset's own channels, and leaves the paper's defaults untouched."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_TRAINING, TINY_UNET, compose_config, run_training
from test_patch_dataset import copy_real, infer_and_write

SAMPLES = ("bangladesh_s2_arcgis", "nepal_rgb_colour_masks", "sichuan_aerial_colour_masks")


def test_the_paper_defaults_are_untouched(tmp_path):
    paper = compose_config("train", tmp_path, ["data.root=sites"])
    assert (paper.threshold, paper.loss.name, paper.augment.name, paper.trainer.max_epochs) == (0.5, "bce", "none", 30)
    recipe = compose_config("train", tmp_path, ["data=patches", "data.root=x", "experiment=real_patches"])
    assert recipe.data.channels is None and recipe.data._target_.endswith("PatchFolderDataModule")


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLES)
def test_real_patches_trains_on_each_real_sample(tmp_path, capsys, name):
    root = copy_real(tmp_path, name)
    _, text = infer_and_write(capsys, root)
    if name == "bangladesh_s2_arcgis":  # what `slidemap dataset` could not infer, set as a user would
        text = text.replace("# channels:", "channels:").replace("  # landslide: [2]", "  landslide: [2]")
    if name != "nepal_rgb_colour_masks":  # too few patches with landslides for a drawn split: each role sees all
        text = text.replace("splits: {train: .}", "splits: {train: ., val: ., test: .}")
    (root / "dataset.yaml").write_text(text)
    cfg = compose_config("train", tmp_path / "run", ["data=patches", f"data.root={root}", "experiment=real_patches",
                                                     *TINY_TRAINING, TINY_UNET, "window=128"])
    record = json.loads((run_training(cfg) / "metrics.json").read_text())
    channels = ["red", "green", "blue", "nir"] if name == "bangladesh_s2_arcgis" else ["red", "green", "blue"]
    assert record["channels"] == channels and record["inputs"] == "dataset"
    assert 0 < record["threshold"] < 1 and "average_precision" in record["areas"][name]
