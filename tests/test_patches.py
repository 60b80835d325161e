"""Grid patches and training-area normalisation, on arrays small enough to check every value by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from slidemap.data.sites.site import Site
from slidemap.data.tiling.patches import Normaliser, Patches, cut_patches, fit_normaliser
from slidemap.data.tiling.split import Block


def make_site(bands: np.ndarray, slope: np.ndarray, valid: np.ndarray, name: str = "s") -> Site:
    shape = valid.shape
    return Site(name=name, bands=bands.astype(np.float32), dem=np.zeros(shape, np.float32),
                slope=slope.astype(np.float32), label=np.zeros(shape, np.uint8), valid=valid,
                transform=Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 2_500_000.0), crs=CRS.from_epsg(32651))


# ---------------------------------------------------------------- cut_patches


def grid_stack() -> np.ndarray:
    """(2, 6, 7): channel 0 holds 100 + 10 * row + col, channel 1 its negative; no pixel is 0."""
    rows, cols = np.mgrid[0:6, 0:7]
    ch0 = 100 + 10 * rows + cols
    return np.stack([ch0, -ch0]).astype(np.float32)


def test_patches_hold_the_right_values_and_pad_past_the_block_edge():
    # Block rows 1-4, cols 2-4 (4 x 3 px); window 2 -> origins (1,2), (1,4), (3,2), (3,4).
    # The windows at col 4 run one column past the block: col 5 belongs to a neighbour and must read as padding.
    block = Block(row0=1, col0=2, rows=4, cols=3)
    label = np.zeros((6, 7), np.uint8)
    label[1, 2] = 1
    label[4, 4] = 1
    label[2, 5] = 1  # outside the block, next to the right-hand windows
    p = cut_patches(grid_stack(), label, np.ones((6, 7), bool), block, 2)

    assert len(p) == 4
    np.testing.assert_array_equal(p.origins, [[1, 2], [1, 4], [3, 2], [3, 4]])
    assert p.x.shape == (4, 2, 2, 2) and p.x.dtype == np.float32
    assert p.y.shape == p.valid.shape == (4, 2, 2)
    np.testing.assert_array_equal(p.x[0, 0], [[112, 113], [122, 123]])
    np.testing.assert_array_equal(p.x[1, 0], [[114, 0], [124, 0]])
    np.testing.assert_array_equal(p.x[1, 1], [[-114, 0], [-124, 0]])
    np.testing.assert_array_equal(p.x[2, 0], [[132, 133], [142, 143]])
    np.testing.assert_array_equal(p.x[3, 0], [[134, 0], [144, 0]])
    np.testing.assert_array_equal(p.valid[0], [[True, True], [True, True]])
    np.testing.assert_array_equal(p.valid[1], [[True, False], [True, False]])
    np.testing.assert_array_equal(p.valid[3], [[True, False], [True, False]])
    np.testing.assert_array_equal(p.y[0], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(p.y[1], [[0, 0], [0, 0]])  # the label at (2, 5) is a neighbour's
    np.testing.assert_array_equal(p.y[3], [[0, 0], [1, 0]])


def test_no_pixel_outside_the_block_leaks_in():
    # Everything outside the block is 999; inside it is 1. Patches must hold only 1 (valid) or 0 (padding).
    stack = np.full((1, 9, 9), 999.0, np.float32)
    block = Block(2, 3, 5, 3)
    stack[(0, *block.slices)] = 1.0
    p = cut_patches(stack, np.ones((9, 9), np.uint8), np.ones((9, 9), bool), block, 4)
    # 5 rows -> 2 window rows, 3 cols -> 1 window column; each patch 4x4: 5 * 3 = 15 valid pixels in all.
    assert len(p) == 2
    assert set(np.unique(p.x)) == {0.0, 1.0}
    np.testing.assert_array_equal(p.x[:, 0] == 1.0, p.valid)
    assert int(p.valid.sum()) == 15 and int(p.y.sum()) == 15


def test_invalid_pixels_keep_their_patch_but_fully_invalid_patches_are_dropped():
    block = Block(row0=1, col0=2, rows=4, cols=3)
    valid = np.ones((6, 7), bool)
    valid[3:5, 2:4] = False  # the whole (3, 2) window
    valid[1, 4] = False  # one pixel of the (1, 4) window
    p = cut_patches(grid_stack(), np.zeros((6, 7), np.uint8), valid, block, 2)
    np.testing.assert_array_equal(p.origins, [[1, 2], [1, 4], [3, 4]])
    np.testing.assert_array_equal(p.valid[1], [[False, False], [True, False]])


def test_a_block_of_nothing_valid_gives_no_patches():
    p = cut_patches(grid_stack(), np.zeros((6, 7), np.uint8), np.zeros((6, 7), bool), Block(0, 0, 6, 7), 4)
    assert len(p) == 0 and p.x.shape == (0, 2, 4, 4) and p.origins.shape == (0, 2)


def test_concat_keeps_order():
    stack, label, valid = grid_stack(), np.zeros((6, 7), np.uint8), np.ones((6, 7), bool)
    a = cut_patches(stack, label, valid, Block(0, 0, 2, 4), 2)  # 2 patches
    b = cut_patches(stack, label, valid, Block(4, 0, 2, 6), 2)  # 3 patches
    both = Patches.concat([a, b])
    assert len(both) == 5
    np.testing.assert_array_equal(both.origins, [[0, 0], [0, 2], [4, 0], [4, 2], [4, 4]])
    np.testing.assert_array_equal(both.x[3, 0], [[142, 143], [152, 153]])


# ---------------------------------------------------------------- normalisation statistics


def two_area_site() -> tuple[Site, Block, Block]:
    """B2 holds 1..5 (plus an invalid 99) in area A and 6..11 in area B; 50 and 60 elsewhere must not count."""
    b2 = np.array([[1, 2, 3, 50, 50, 50],
                   [4, 99, 5, 50, 50, 50],
                   [60, 60, 60, 6, 7, 8],
                   [60, 60, 60, 9, 10, 11]], np.float32)
    valid = np.ones(b2.shape, bool)
    valid[1, 1] = False
    bands = np.stack([b2, np.full(b2.shape, 0.5), np.zeros(b2.shape), np.zeros(b2.shape)])
    slope = np.where(np.arange(6)[None, :] < 3, 30.0, 40.0) * np.ones(b2.shape)
    slope[2:, :3] = 70.0  # outside both areas
    return make_site(bands, slope, valid), Block(0, 0, 2, 3), Block(2, 3, 2, 3)


def test_normaliser_uses_only_valid_pixels_of_the_given_areas():
    site, area_a, area_b = two_area_site()
    norm = fit_normaliser([(site, area_a)], ("B2",))
    # Area A's valid B2 values are 1, 2, 3, 4, 5: mean 3, population variance (4 + 1 + 0 + 1 + 4) / 5 = 2.
    np.testing.assert_allclose(norm.mean, [3.0], rtol=1e-6)
    np.testing.assert_allclose(norm.std, [np.sqrt(2.0)], rtol=1e-6)
    assert norm.channels == ("B2",)


def test_normaliser_pools_pixels_over_areas():
    site, area_a, area_b = two_area_site()
    norm = fit_normaliser([(site, area_a), (site, area_b)], ("B2", "slope", "B3"))
    # B2: 1..11, mean 6, variance (11^2 - 1) / 12 = 10.
    # slope: five pixels at 30 (A) and six at 40 (B): mean 390 / 11, variance 100 * (5/11) * (6/11) = 3000 / 121.
    # B3: constant 0.5, so the standard deviation is floored at 1e-6 instead of dividing by zero.
    np.testing.assert_allclose(norm.mean, [6.0, 390 / 11, 0.5], rtol=1e-6)
    np.testing.assert_allclose(norm.std[:2], [np.sqrt(10.0), np.sqrt(3000 / 121)], rtol=1e-5)
    assert norm.std[2] == pytest.approx(1e-6)
    assert norm.mean.dtype == norm.std.dtype == np.float32


def test_normaliser_without_valid_pixels_refuses():
    site, area_a, _ = two_area_site()
    with pytest.raises(ValueError, match="no valid pixels"):
        fit_normaliser([(site, Block(1, 1, 1, 1))], ("B2",))  # the one invalid pixel


def test_normaliser_standardises_and_zeroes_invalid_pixels():
    norm = Normaliser(("B2", "slope"), np.array([2.0, 30.0], np.float32), np.array([4.0, 10.0], np.float32))
    stack = np.array([[[2.0, 6.0], [-2.0, 99.0]], [[30.0, 50.0], [10.0, 99.0]]], np.float32)
    valid = np.array([[True, True], [True, False]])
    out = norm(stack, valid)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [[0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(out[1], [[0.0, 2.0], [-2.0, 0.0]])


def test_normaliser_round_trips_through_json():
    site, area_a, area_b = two_area_site()
    norm = fit_normaliser([(site, area_a), (site, area_b)], ("B2", "slope"))
    d = json.loads(json.dumps(norm.to_dict()))
    assert d["channels"] == ["B2", "slope"]
    back = Normaliser.from_dict(d)
    assert back.channels == ("blue", "slope")  # Sentinel-2 ids come back as the common names they mean
    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_array_equal(back.std, norm.std)
    assert back.mean.dtype == back.std.dtype == np.float32
    stack = site.stack(("B2", "slope"))
    np.testing.assert_array_equal(back(stack, site.valid), norm(stack, site.valid))
