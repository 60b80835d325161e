"""The augment group: D4 and jitter keep image, mask and validity aligned, offsets stay inside the training blocks,
a seed gives the same batches, run names and the report keep augmentations apart."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from slidemap.data.loading.augment import Augmentation, augment_batch, d4_transform, generator_for, random_d4
from slidemap.data.loading.datamodule import SiteDataModule, prepare
from slidemap.data.sites.reader import read_sites
from slidemap.data.tiling.offsets import EpochSampler, OffsetWindows, TrainArea, draw_windows
from slidemap.errors import InputError
from slidemap.reporting.sweep import key_name, run_key, sweep_axes

from conftest import TINY_TRAINING, TINY_UNET, compose_config, run_training

PATCH = np.array([[1, 2, 3],
                  [4, 5, 6],
                  [7, 8, 9]], np.float32)
"""An asymmetric patch: each of the 8 D4 transforms gives a different array."""
BY_HAND = [PATCH, np.rot90(PATCH, 1), np.rot90(PATCH, 2), np.rot90(PATCH, 3),
           np.fliplr(PATCH), np.fliplr(np.rot90(PATCH, 1)), np.fliplr(np.rot90(PATCH, 2)),
           np.fliplr(np.rot90(PATCH, 3))]


def test_the_eight_d4_transforms_by_hand():
    t = torch.from_numpy(PATCH)
    outs = [d4_transform(t, k).numpy() for k in range(8)]
    for k in range(8):
        np.testing.assert_array_equal(outs[k], BY_HAND[k])
    assert len({o.tobytes() for o in outs}) == 8


def test_random_d4_moves_image_mask_and_validity_together():
    n = 64
    x = torch.from_numpy(np.stack([np.stack([PATCH, 10 * PATCH])] * n))  # (n, 2, 3, 3)
    y = (x[:, 0] > 5).float()  # mask and validity are functions of the pixel value: any misalignment shows
    valid = x[:, 0] != 2
    x2, y2, v2 = random_d4([x, y, valid], torch.Generator().manual_seed(0))
    assert torch.equal(y2, (x2[:, 0] > 5).float()) and torch.equal(v2, x2[:, 0] != 2)
    assert torch.equal(x2[:, 1], 10 * x2[:, 0])  # every channel of a sample gets the same transform
    seen = {x2[i, 0].numpy().tobytes() for i in range(n)}
    assert len(seen) == 8  # 64 draws from 8 elements: all of them, each one of the hand-made ones
    assert seen == {b.tobytes() for b in BY_HAND}


def test_jitter_is_a_gain_and_haze_in_reflectance_on_optical_bands_only():
    channels = ("B2", "B3", "B4", "B8", "slope", "dndvi")
    mean = np.array([0.05, 0.08, 0.07, 0.25, 20.0, 0.0], np.float32)
    std = np.array([0.02, 0.03, 0.03, 0.08, 10.0, 0.1], np.float32)
    g = torch.Generator().manual_seed(1)
    reflect = torch.rand(8, 6, 4, 4, generator=g) * 0.3
    z = (reflect - torch.from_numpy(mean)[:, None, None]) / torch.from_numpy(std)[:, None, None]
    valid = torch.ones(8, 4, 4, dtype=torch.bool)
    valid[:, 0, 0] = False
    z = torch.where(valid[:, None], z, torch.zeros(()))
    aug = Augmentation(name="jitter", gain=0.1, haze=0.01)  # the optical bands are told by their channel names
    out, _, _ = augment_batch([z, torch.zeros(8, 4, 4), valid], aug, channels, mean, std, generator_for(0, 2))
    back = out * torch.from_numpy(std)[:, None, None] + torch.from_numpy(mean)[:, None, None]
    for i in range(8):
        m = valid[i]
        r, r2 = reflect[i, :4][:, m].flatten(), back[i, :4][:, m].flatten()
        gain, haze = np.polyfit(r.numpy(), r2.numpy(), 1)  # one straight line through every optical pixel
        assert 0.9 - 1e-4 <= gain <= 1.1 + 1e-4 and -1e-5 <= haze <= 0.01 + 1e-5
        np.testing.assert_allclose(r2.numpy(), gain * r.numpy() + haze, atol=1e-5)
    assert torch.equal(out[:, 4:], z[:, 4:])  # slope and the change channel untouched
    assert torch.all(out[:, :, 0, 0] == 0)  # invalid pixels stay 0


def test_augment_batch_is_a_function_of_seed_and_step():
    aug = Augmentation.from_config({"name": "full", "flips": True, "offsets": True, "gain": 0.1, "haze": 0.01})
    batch = [torch.randn(4, 5, 8, 8), (torch.rand(4, 8, 8) > 0.5).float(), torch.rand(4, 8, 8) > 0.1]
    mean, std = np.zeros(5, np.float32), np.ones(5, np.float32)
    channels = ("B2", "B3", "B4", "B8", "slope")
    a = augment_batch(batch, aug, channels, mean, std, generator_for(3, 7))
    b = augment_batch(batch, aug, channels, mean, std, generator_for(3, 7))
    c = augment_batch(batch, aug, channels, mean, std, generator_for(3, 8))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("raw, message", [
    ({"name": "x", "flips": "yes"}, r"augment.flips: must be true or false"),
    ({"name": "x", "gain": 2.0}, r"augment.gain: must be a number in \[0, 0.5\]"),
    ({"name": "x", "haze": -0.1}, r"augment.haze: must be a number in \[0, 0.1\]"),
    ({"name": "x", "rotate": True}, r"unknown key\(s\) \['rotate'\]"),
])
def test_bad_augment_values_are_one_line_errors(raw, message):
    with pytest.raises(InputError, match=message):
        Augmentation.from_config(raw)


def test_offsets_stay_inside_the_training_blocks(synthetic_root):
    sites = read_sites(synthetic_root)
    data = prepare(sites, list(sites), 32)
    for area, (name, site) in zip(data.train_areas, sites.items()):
        rows, cols = data.splits[name].train.slices
        assert area.valid.shape == site.valid[rows, cols].shape  # the training block, nothing else
        np.testing.assert_array_equal(area.y, site.label[rows, cols])
    windows = draw_windows(data.train_areas, 32, 500, seed=0, epoch=0)
    for a, r, c in windows:
        h, w = data.train_areas[a].valid.shape
        assert 0 <= r <= h - 32 and 0 <= c <= w - 32
        assert data.train_areas[a].valid[r:r + 32, c:c + 32].any()
    counts = np.bincount(windows[:, 0], minlength=len(data.train_areas)) / len(windows)
    share = np.array([a.grid_count(32) for a in data.train_areas], float)
    np.testing.assert_allclose(counts, share / share.sum(), atol=0.08)  # areas drawn as often as the grid has them


def test_an_area_smaller_than_the_window_is_padded_as_nodata():
    area = TrainArea(np.ones((2, 10, 40), np.float32), np.ones((10, 40), np.uint8), np.ones((10, 40), bool))
    x, y, v = OffsetWindows([area], 32, 4, seed=0)[0]
    assert x.shape == (2, 32, 32) and v[:10].all() and not v[10:].any() and not x[:, 10:].any() and not y[10:].any()


def test_offset_windows_are_new_each_epoch_and_the_same_for_a_seed():
    area = TrainArea(np.arange(2 * 64 * 64, dtype=np.float32).reshape(2, 64, 64), np.zeros((64, 64), np.uint8),
                     np.ones((64, 64), bool))
    sampler = EpochSampler(6, seed=0)
    first, second = list(sampler), list(sampler)  # each pass is the next epoch
    assert sorted(first) == list(range(6)) and sorted(second) == list(range(6, 12))
    sampler.set_epoch(0)
    assert list(sampler) == first  # Lightning's set_epoch (a resumed run) draws the same epoch again
    data = OffsetWindows([area], 16, 6, seed=0)
    again = OffsetWindows([area], 16, 6, seed=0)
    assert all(torch.equal(data[i][0], again[i][0]) for i in range(12))
    assert not torch.equal(torch.stack([data[i][0] for i in range(6)]), torch.stack([data[6 + i][0] for i in range(6)]))


def test_the_datamodule_serves_the_grid_pixels_per_epoch_at_offsets(synthetic_root):
    grid = SiteDataModule(str(synthetic_root), window=32, min_samples_per_epoch=32)
    grid.setup()
    offsets = SiteDataModule(str(synthetic_root), window=32, min_samples_per_epoch=32,
                             augment={"name": "offsets", "flips": False, "offsets": True, "gain": 0.0, "haze": 0.0})
    offsets.setup()
    assert len(offsets.train_dataloader().dataset) == max(len(grid.data.train), 32)
    a = [b[0] for b in offsets.train_dataloader()]
    b = [b[0] for b in offsets.train_dataloader()]  # a new loader, the same seed: the same first epoch
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_a_run_with_augment_full_trains_and_is_named_and_recorded(synthetic_root, tmp_path):
    out = run_training(compose_config("train", tmp_path / "run", [f"data.root={synthetic_root}", *TINY_TRAINING,
                                                                    TINY_UNET, "augment=full", "scenario=china"]))
    record = json.loads((out / "metrics.json").read_text())
    assert record["augment"] == "full" and record["cell"] == "unet-64-china-post-full"
    cfg = compose_config("train", tmp_path / "x", ["augment=d4", "scenario=china"])
    assert cfg.run_name == "unet-64-china-d4"
    assert compose_config("train", tmp_path / "x", ["scenario=china"]).run_name == "unet-64-china"


def test_the_report_keeps_augmentations_apart(tmp_path):
    plain = {"model": "unet", "window": 64, "scenario": "china", "inputs": "post", "areas": {}}
    assert run_key(plain) == ("unet", 64, "china", "post")
    assert run_key({**plain, "augment": "none"}) == run_key(plain)
    assert run_key({**plain, "augment": "d4"}) == ("unet", 64, "china", "post+d4")
    assert key_name(("unet", 64, "china", "change+full")) == "model=unet window=64 scenario=china inputs=change " \
                                                             "augment=full"
    multirun = tmp_path / "multirun.yaml"
    multirun.write_text("hydra:\n  overrides:\n    task: [model=unet, window=64, 'augment=none,d4', seed=0]\n"
                        "model: {name: unet}\nwindow: 64\nscenario: {name: all}\ninputs: {name: post}\n"
                        "augment: {name: none}\nseed: 0\n")
    assert sweep_axes(multirun)["inputs"] == ["post", "post+d4"]


def test_training_batches_are_augmented_on_the_device_and_others_are_not(synthetic_root):
    from types import SimpleNamespace

    dm = SiteDataModule(str(synthetic_root), window=32,
                        augment={"name": "d4", "flips": True, "offsets": False, "gain": 0.0, "haze": 0.0})
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    dm.trainer = SimpleNamespace(training=False, global_step=0)
    assert dm.on_after_batch_transfer(batch, 0) is batch  # validation, test, prediction: as served
    dm.trainer = SimpleNamespace(training=True, global_step=5)
    out = dm.on_after_batch_transfer(batch, 0)
    expected = random_d4(list(batch), generator_for(0, 5))
    assert all(torch.equal(p, q) for p, q in zip(out, expected))
