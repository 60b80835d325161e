"""Patch datasets served from their files (``data.stream``): the same tiles, masks and scores as the in-memory path,
the normaliser from a seeded sample of train patches, and bad settings refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import patch_fixtures as fx
from conftest import TINY_TRAINING, TINY_UNET, compose_config, run_training
from slidemap.data.patchsets.folder import PatchFolderDataModule
from slidemap.data.patchsets.stream import MEMORY_BUDGET, StreamedPatches, sample_indices, should_stream
from slidemap.errors import InputError
from slidemap.mapping.checkpoint import load_checkpoint

RGBN_SLOPE = ["red", "green", "blue", "nir", "slope"]


def ready(root, **kwargs) -> PatchFolderDataModule:
    dm = PatchFolderDataModule(str(root), **{"window": 32, "channels": RGBN_SLOPE, **kwargs})
    dm.setup()
    return dm


def items(dataset) -> list[tuple[torch.Tensor, ...]]:
    return [dataset[i] for i in range(len(dataset))]


@pytest.mark.parametrize("fmt", ["tif", "npy"])
def test_streamed_tiles_equal_the_in_memory_tiles_with_the_whole_train_split_fitted(tmp_path, fmt):
    root = fx.write_dataset(tmp_path / fmt, fmt, counts={"train": 10} if fmt == "npy" else None)
    (root / "dataset.yaml").write_text((root / "dataset.yaml").read_text() + "windows: [16, 32]\n")
    memory = ready(root, stream=False, window=16)  # four 16 px tiles of each 32 px patch
    streamed = ready(root, stream=True, stream_sample=0, window=16)  # 0: fitted on every train patch
    assert isinstance(streamed.data.train, StreamedPatches)
    np.testing.assert_allclose(streamed.data.normaliser.mean, memory.data.normaliser.mean, rtol=1e-6)
    np.testing.assert_allclose(streamed.data.normaliser.std, memory.data.normaliser.std, rtol=1e-6)
    for role in ("train", "val", "test"):
        held, read = getattr(memory.data, role), getattr(streamed.data, role)
        assert len(read) == len(read.pairs) * 4  # every tile of every patch, none dropped
        assert len(read) >= len(held)  # in memory, all-invalid tiles are dropped
        by_origin = {tuple(o): i for i, o in enumerate(read.origins)}
        for j, origin in enumerate(held.origins):
            x, y, valid = read[by_origin[tuple(origin)]]
            np.testing.assert_allclose(x.numpy(), held.x[j], atol=1e-5)
            np.testing.assert_array_equal(y.numpy(), held.y[j].astype(np.float32))
            np.testing.assert_array_equal(valid.numpy(), held.valid[j])
    np.testing.assert_array_equal(streamed.data.test_split.y, memory.data.test_split.y)
    np.testing.assert_array_equal(streamed.data.test_split.valid, memory.data.test_split.valid)
    assert streamed.checkpoint_info()["normaliser_fit"] == {"patches": 6, "of": 6, "seed": 0}
    assert "normaliser_fit" not in memory.checkpoint_info()


def test_the_normaliser_sample_is_seeded_and_drawn_from_train_only(tmp_path):
    root = fx.write_dataset(tmp_path / "tif", "tif")
    assert sample_indices(6, 3, seed=1) == sample_indices(6, 3, seed=1)
    assert sample_indices(6, 3, seed=1) != sample_indices(6, 3, seed=2) or sample_indices(6, 3, 3) != [0, 1, 2]
    assert sample_indices(6, 0, seed=1) == list(range(6)) and sample_indices(6, 9, seed=1) == list(range(6))
    a, b = ready(root, stream=True, stream_sample=2, seed=4), ready(root, stream=True, stream_sample=2, seed=4)
    np.testing.assert_array_equal(a.data.normaliser.mean, b.data.normaliser.mean)
    chosen = sample_indices(6, 2, seed=4)
    pairs = [a.data.train.pairs[i] for i in chosen]  # the mean of the chosen train patches' valid pixels, by hand
    read = [a.data.train.read(*p) for p in pairs]
    red = np.concatenate([x[0][seen] for x, _, _, seen in read]).astype(np.float64)
    assert a.data.normaliser.mean[0] == pytest.approx(red.mean(), rel=1e-6)
    assert a.checkpoint_info()["normaliser_fit"] == {"patches": 2, "of": 6, "seed": 4}


def test_auto_streams_only_above_the_memory_budget():
    per_patch = 14 * 128 * 128 * 4
    assert not should_stream("auto", MEMORY_BUDGET // per_patch, 14, (128, 128))
    assert should_stream("auto", MEMORY_BUDGET // per_patch + 1, 14, (128, 128))
    assert should_stream("auto", 20_000, 14, (128, 128))
    assert should_stream(True, 1, 1, (32, 32)) and not should_stream(False, 10**6, 14, (128, 128))


def test_a_streamed_run_trains_scores_and_records_the_sample(tmp_path):
    root = fx.write_dataset(tmp_path / "tif", "tif")
    runs = {}
    for stream in ("false", "true"):
        cfg = compose_config("train", tmp_path / f"run-{stream}", [
            "data=patches", f"data.root={root}", "window=32", "inputs=rgbn", f"data.stream={stream}",
            "data.stream_sample=0", *TINY_TRAINING, TINY_UNET])
        runs[stream] = json.loads((run_training(cfg) / "metrics.json").read_text())
    memory, streamed = runs["false"]["areas"]["tif"], runs["true"]["areas"]["tif"]
    assert streamed["tp"] + streamed["fn"] == memory["tp"] + memory["fn"]  # the same labelled test pixels scored
    model = load_checkpoint(runs["true"]["best_checkpoint"])
    assert model.channels == tuple(runs["true"]["channels"]) and model.distribution is not None


@pytest.mark.parametrize("kwargs, key", [
    ({"stream": "sometimes"}, "data.stream"),
    ({"stream_sample": -1}, "data.stream_sample"),
    ({"stream_sample": 2.5}, "data.stream_sample"),
])
def test_bad_stream_settings_are_one_line(tmp_path, kwargs, key):
    root = fx.write_dataset(tmp_path / "tif", "tif")
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        ready(root, **kwargs)


def test_a_split_whose_masks_label_nothing_is_refused_before_any_image_is_read(tmp_path):
    root = fx.write_dataset(tmp_path / "npy", "npy")
    for mask in (root / "test" / "masks").iterdir():
        np.save(mask, np.full(np.load(mask).shape, 255, np.uint8))
    with pytest.raises(InputError, match="the test split has no labelled pixel"):
        ready(root, stream=True)


def test_the_temperature_is_fitted_on_a_seeded_sample_of_a_large_validation_area():
    from slidemap.training.calibrate import sample_pixels

    z, y = np.arange(10, dtype=np.float32), (np.arange(10) % 2).astype(np.uint8)
    assert sample_pixels(z, y, cap=10)[0] is z  # small areas: every pixel, as before
    a, b = sample_pixels(z, y, cap=4, seed=1), sample_pixels(z, y, cap=4, seed=1)
    np.testing.assert_array_equal(a[0], b[0])
    assert len(a[0]) == 4 and len(set(a[0].tolist())) == 4  # without replacement
    np.testing.assert_array_equal(a[1], a[0].astype(int) % 2)  # labels stay with their logits
