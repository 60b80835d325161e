"""One scenario's data: statistics from training areas only, patches per area, loaders that shuffle reproducibly."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import fake_sites as fs
from slidemap.data.loading.datamodule import SiteDataModule, prepare
from slidemap.data.sites.reader import read_sites
from slidemap.errors import InputError

# Fake sites are (16, 20) px: split along columns into val cols 0-5 (min(32, 12 // 2) = 6), train cols 6-11,
# test cols 12-19 (0.4 * 20 = 8). With a 4 px window: train 4 x 2 = 8 patches, val 8, test 4 x 2 = 8.
TRAIN_COLS = range(6, 12)


def graded_bands(shape: tuple[int, int] = fs.SHAPE) -> np.ndarray:
    """B2 DN = 100 + 10 col + 1000 row (reflectance 0.01 + 0.001 col + 0.1 row); B3, B4, B8 constant."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    b2 = 100 + 10 * cols + 1000 * rows
    return np.stack([b2, *(np.full(shape, v) for v in fs.DN[1:])]).astype(np.uint16)


def write_site(folder: Path, shape: tuple[int, int] = fs.SHAPE, bands: np.ndarray | None = None) -> Path:
    """A fake site of any shape: graded bands, a 0.1 m/m tilted DEM in EPSG:4326, the landslide square."""
    t = fs.s2_transform()
    fs.write_raster(folder / "s2.tif", graded_bands(shape) if bands is None else bands, fs.S2_CRS, t, nodata=0)
    fs.write_dem_geographic(folder / "dem.tif", fs.S2_CRS, t, shape, fs.plane(0.1, 0.0))
    fs.write_geojson(folder / "inventory.geojson", [fs.to_crs(fs.pixel_polygon(t, fs.SQUARE_PX), fs.S2_CRS,
                                                              "EPSG:4326")])
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Site 'a' (graded) and site 'b' (B2 = 0.5 everywhere): b must never move a-only statistics."""
    root = tmp_path_factory.mktemp("dm") / "sites"
    write_site(root / "a")
    write_site(root / "b", bands=fs.constant_bands((5000, 5000, 5000, 5000)))
    return root


@pytest.fixture()
def sites(root):
    return read_sites(root)


# ---------------------------------------------------------------- normalisation


def test_statistics_come_from_the_training_sites_train_block(sites):
    data = prepare(sites, ["a"], window=4)
    # B2 over rows 0-15, cols 6-11: mean 0.01 + 0.001 * 8.5 + 0.1 * 7.5; variance (0.001^2 * 35 + 0.1^2 * 255) / 12
    # (columns and rows are independent uniform grids: var of 6..11 is 35/12, of 0..15 is 255/12).
    mean_b2 = 0.01 + 0.001 * 8.5 + 0.1 * 7.5
    std_b2 = math.sqrt((1e-6 * 35 + 0.01 * 255) / 12)
    n = data.normaliser
    assert n.channels == ("blue", "green", "red", "nir", "slope")  # the paper's B2, B3, B4, B8 by common name
    np.testing.assert_allclose(n.mean[:4], [mean_b2, 0.06, 0.07, 0.30], rtol=1e-5)
    np.testing.assert_allclose(n.std[0], std_b2, rtol=1e-5)
    assert n.mean[4] == pytest.approx(math.degrees(math.atan(0.1)), abs=0.01)  # the tilted plane


def test_test_and_validation_pixels_and_other_sites_do_not_move_the_statistics(sites):
    before = prepare(sites, ["a"], window=4).normaliser
    a = sites["a"]
    bands = a.bands.copy()
    bands[0, 5, 15] = 6.0  # test area
    bands[0, 5, 2] = 6.0  # validation block
    changed = {"a": replace(a, bands=bands), "b": replace(sites["b"], bands=sites["b"].bands * 0.1)}
    after = prepare(changed, ["a"], window=4).normaliser
    np.testing.assert_array_equal(after.mean, before.mean)
    np.testing.assert_array_equal(after.std, before.std)

    bands[0, 5, 8] = 6.0  # a training pixel does: one of 96 values goes from 0.518 to 6.0
    moved = prepare({"a": replace(a, bands=bands), "b": sites["b"]}, ["a"], window=4).normaliser
    assert moved.mean[0] == pytest.approx(before.mean[0] + (6.0 - 0.518) / 96, rel=1e-5)


def test_two_training_sites_pool_their_statistics(sites):
    # 'b' adds 96 training pixels of B2 = 0.5 to a's 96: the mean is the average of both means.
    both = prepare(sites, ["a", "b"], window=4).normaliser
    assert both.mean[0] == pytest.approx((0.01 + 0.001 * 8.5 + 0.1 * 7.5 + 0.5) / 2, rel=1e-5)


# ---------------------------------------------------------------- patches per area


def test_train_patches_only_from_training_sites_and_test_patches_for_every_site(sites):
    data = prepare(sites, ["a"], window=4)
    assert (len(data.train), len(data.val)) == (8, 8)
    assert list(data.test) == ["a", "b"] and [len(p) for p in data.test.values()] == [8, 8]
    assert {tuple(o) for o in data.train.origins} == {(r, c) for r in (0, 4, 8, 12) for c in (6, 10)}
    assert {tuple(o) for o in data.val.origins} == {(r, c) for r in (0, 4, 8, 12) for c in (0, 4)}
    for p in data.test.values():
        assert {tuple(o) for o in p.origins} == {(r, c) for r in (0, 4, 8, 12) for c in (12, 16)}

    # Every training input is site a's own pixel: un-normalised B2 = 0.01 + 0.001 col + 0.1 row.
    n = data.normaliser
    for x, valid, (r0, c0) in zip(data.train.x, data.train.valid, data.train.origins, strict=True):
        rows, cols = np.mgrid[r0:r0 + 4, c0:c0 + 4]
        expected = 0.01 + 0.001 * cols + 0.1 * rows
        np.testing.assert_allclose((x[0] * n.std[0] + n.mean[0])[valid], expected[valid], atol=1e-5)
        # The windows at col 10 run into the test area (cols 12-13): padding, invalid, zero.
        assert valid[:, :max(0, 12 - c0)].all() and not valid[:, 12 - c0:].any()
        assert not x[:, :, 12 - c0:].any()

    # The landslide square (rows 3-7, cols 2-6): col 6 is training (5 px), cols 2-5 validation (20 px).
    assert int(data.train.y.sum()) == 5 and int(data.val.y.sum()) == 20
    assert sum(int(p.y.sum()) for p in data.test.values()) == 0

    both = prepare(sites, ["a", "b"], window=4)
    assert (len(both.train), len(both.val)) == (16, 16)


def test_window_larger_than_a_test_area_names_the_site(tmp_path):
    # 'big' (16, 60): test 24 cols; 'small' (16, 20): test 8 cols < 12.
    write_site(tmp_path / "big", shape=(16, 60))
    write_site(tmp_path / "small")
    sites = read_sites(tmp_path)
    assert len(prepare(sites, ["big"], window=8).test["small"]) == 2 * 1
    with pytest.raises(InputError) as err:
        prepare(sites, ["big"], window=12)
    assert "window 12 px is larger than the test area of site 'small' (16 x 8 px)" in str(err.value)


def test_window_error_names_the_site_folder(tmp_path):
    write_site(tmp_path / "small")
    with pytest.raises(InputError) as err:
        prepare(read_sites(tmp_path), ["small"], window=12)
    assert err.value.path == str(tmp_path / "small")


def test_unknown_training_site_lists_the_known_ones(sites):
    with pytest.raises(InputError) as err:
        prepare(sites, ["a", "nowhere"], window=4)
    assert "unknown training site(s) ['nowhere']" in str(err.value)
    assert "known sites: a, b" in str(err.value)


def test_site_yaml_split_is_honoured(tmp_path):
    # test_side: start -> test cols 0-7, train cols 8-13, val cols 14-19.
    folder = write_site(tmp_path / "a")
    fs.write_yaml(folder, {"split": {"test_side": "start"}})
    data = prepare(read_sites(tmp_path), ["a"], window=4)
    assert {int(c) for c in data.test["a"].origins[:, 1]} == {0, 4}
    assert {int(c) for c in data.train.origins[:, 1]} == {8, 12}
    assert {int(c) for c in data.val.origins[:, 1]} == {14, 18}


# ---------------------------------------------------------------- the Lightning DataModule


def epoch(loader) -> torch.Tensor:
    return torch.cat([x for x, _, _ in loader])


def test_datamodule_serves_loaders(root):
    dm = SiteDataModule(str(root), train_sites=["a"], window=4, batch_size=2, eval_batch_size=3, seed=0)
    dm.setup("fit")
    assert dm.test_areas == ["a", "b"] and dm.in_channels == 5
    batches = list(dm.train_dataloader())
    assert len(batches) == 4  # 8 patches / 2
    x, y, valid = batches[0]
    assert x.shape == (2, 5, 4, 4) and x.dtype == torch.float32
    assert y.shape == (2, 4, 4) and y.dtype == torch.float32 and valid.dtype == torch.bool
    assert [len(b[0]) for b in dm.val_dataloader()] == [3, 3, 2]
    tests = dm.test_dataloader()
    assert len(tests) == 2 and [sum(len(b[0]) for b in t) for t in tests] == [8, 8]


def test_shuffling_is_reproducible_with_the_seed(root):
    def module(seed: int) -> SiteDataModule:
        dm = SiteDataModule(str(root), train_sites=["a"], window=4, batch_size=2, seed=seed)
        dm.setup("fit")
        return dm

    first, again, other = module(0), module(0), module(1)
    assert torch.equal(epoch(first.train_dataloader()), epoch(again.train_dataloader()))
    assert not torch.equal(epoch(first.train_dataloader()), epoch(other.train_dataloader()))
    unshuffled = torch.from_numpy(first.data.train.x)
    assert not torch.equal(epoch(first.train_dataloader()), unshuffled)
    # The same patches, only reordered.
    shuffled = epoch(first.train_dataloader())
    assert sorted(shuffled.flatten(1).tolist()) == sorted(unshuffled.flatten(1).tolist())


def test_datamodule_on_the_synthetic_sites(synthetic_root):
    dm = SiteDataModule(str(synthetic_root), train_sites=["china"], window=64, synthetic={"seed": 0, "scale": 0.1})
    dm.setup()
    assert dm.test_areas == ["china", "japan", "taiwan"]
    # china at scale 0.1: rows round(680 * sqrt(0.1)) = 215; cols round(947 * sqrt(0.1)) = 299, raised to the
    # 448 minimum. Split by columns: test 179, val 32, train 237 -> at 64 px: train 4 x 4, val 4 x 1, test 4 x 3.
    assert dm.data.sites["china"].shape == (215, 448)
    assert (len(dm.data.train), len(dm.data.val), len(dm.data.test["china"])) == (16, 4, 12)
    x, y, valid = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 5, 64, 64)
