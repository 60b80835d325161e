"""The paper's split: 3:2 train:test along the longer axis, validation at the far edge, a regular window grid."""

from __future__ import annotations

import numpy as np
import pytest

from slidemap.data.tiling.split import Block, SplitConfig, split_site
from slidemap.errors import InputError

# ---------------------------------------------------------------- default split, worked by hand


def test_wide_grid_is_cut_along_columns():
    # (100, 250): columns are longer. Test = 40% of 250 = 100 cols; train+val = 150 cols;
    # validation = 10% of 150 = 15 < 32, so the 32 px minimum applies; train = 150 - 32 = 118.
    # Test at the end (right), validation at the far (left) edge of the training area.
    split = split_site((100, 250))
    assert split.axis == "cols"
    assert split.val == Block(row0=0, col0=0, rows=100, cols=32)
    assert split.train == Block(row0=0, col0=32, rows=100, cols=118)
    assert split.test == Block(row0=0, col0=150, rows=100, cols=100)


def test_tall_grid_is_cut_along_rows():
    # (300, 120): rows are longer. Test = 0.4 * 300 = 120 rows; train+val = 180; val = max(18, 32) = 32; train = 148.
    split = split_site((300, 120))
    assert split.axis == "rows"
    assert split.val == Block(0, 0, 32, 120)
    assert split.train == Block(32, 0, 148, 120)
    assert split.test == Block(180, 0, 120, 120)


def test_train_to_test_is_three_to_two():
    split = split_site((100, 250))
    train_area = (split.train.cols + split.val.cols) * 100
    test_area = split.test.cols * 100
    assert train_area * 2 == test_area * 3  # 15000 : 10000


def test_validation_is_ten_percent_of_training_when_above_the_minimum():
    # (400, 1000): test 400 cols, train+val 600, val = 10% of 600 = 60 (> 32), train 540.
    split = split_site((400, 1000))
    assert (split.val.col0, split.val.cols) == (0, 60)
    assert (split.train.col0, split.train.cols) == (60, 540)
    assert (split.test.col0, split.test.cols) == (600, 400)


def test_validation_never_takes_more_than_half_of_training():
    # Forced along the short axis of (100, 250): test 40 rows, train+val 60; 32 px minimum > 60 // 2, so val = 30.
    split = split_site((100, 250), SplitConfig(axis="rows"))
    assert split.axis == "rows"
    assert (split.val.row0, split.val.rows) == (0, 30)
    assert (split.train.row0, split.train.rows) == (30, 30)
    assert (split.test.row0, split.test.rows) == (60, 40)
    assert split.test.cols == 250


def test_test_side_start_puts_test_first_and_validation_at_the_far_end():
    # Same lengths as the default (100, 250) split, mirrored: test [0, 100), train [100, 218), val [218, 250).
    split = split_site((100, 250), SplitConfig(test_side="start"))
    assert split.test == Block(0, 0, 100, 100)
    assert split.train == Block(0, 100, 100, 118)
    assert split.val == Block(0, 218, 100, 32)


def test_val_fraction_zero_means_no_validation_block():
    split = split_site((100, 250), SplitConfig(val_fraction=0.0))
    assert split.val.cols == 0
    assert split.train == Block(0, 0, 100, 150)
    assert split.test == Block(0, 150, 100, 100)


@pytest.mark.parametrize("shape", [(100, 250), (300, 120), (215, 448), (17, 33), (128, 128)])
@pytest.mark.parametrize("config", [SplitConfig(), SplitConfig(test_side="start"), SplitConfig(axis="rows"),
                                    SplitConfig(axis="cols", test_fraction=0.5, val_fraction=0.2)])
def test_blocks_tile_the_grid_exactly_once(shape, config):
    split = split_site(shape, config)
    cover = np.zeros(shape, int)
    for block in split.blocks().values():
        assert block.rows >= 0 and block.cols >= 0
        cover[block.slices] += 1
    np.testing.assert_array_equal(cover, np.ones(shape, int))


def test_blocks_are_named_train_val_test():
    split = split_site((100, 250))
    assert split.blocks() == {"train": split.train, "val": split.val, "test": split.test}


# ---------------------------------------------------------------- site.yaml split options


def test_from_meta_without_split_gives_the_paper_defaults():
    assert SplitConfig.from_meta({}) == SplitConfig("auto", 0.4, 0.1, "end", 32)
    assert SplitConfig.from_meta({"split": None, "description": "x"}) == SplitConfig()


def test_from_meta_reads_every_option():
    meta = {"split": {"axis": "rows", "test_fraction": 0.5, "val_fraction": 0.2, "test_side": "start",
                      "min_val": 8}}
    cfg = SplitConfig.from_meta(meta)
    assert cfg == SplitConfig(axis="rows", test_fraction=0.5, val_fraction=0.2, test_side="start", min_val=8)
    # (100, 250) by rows: test 50 rows at the top; train+val 50, val = max(10, 8) = 10 at the bottom; train 40.
    split = split_site((100, 250), cfg)
    assert split.test == Block(0, 0, 50, 250)
    assert split.train == Block(50, 0, 40, 250)
    assert split.val == Block(90, 0, 10, 250)


@pytest.mark.parametrize(("split", "problem"), [
    ("rows", "'split' must be a mapping"),
    ({"direction": "rows"}, "unknown split keys ['direction']"),
    ({"axis": "diagonal"}, "split axis must be auto, rows or cols, got 'diagonal'"),
    ({"test_side": "left"}, "split test_side must be start or end, got 'left'"),
    ({"test_fraction": 0.0}, "split fractions must lie in (0, 1)"),
    ({"test_fraction": 1.0}, "split fractions must lie in (0, 1)"),
    ({"test_fraction": 1.5}, "split fractions must lie in (0, 1)"),
    ({"val_fraction": -0.1}, "split fractions must lie in (0, 1)"),
    ({"val_fraction": 1.0}, "split fractions must lie in (0, 1)"),
])
def test_from_meta_rejects_bad_options_naming_the_file(split, problem):
    with pytest.raises(InputError) as err:
        SplitConfig.from_meta({"split": split}, "sites/taiwan/site.yaml")
    assert err.value.path == "sites/taiwan/site.yaml"
    assert problem in err.value.problem
    assert str(err.value).startswith("sites/taiwan/site.yaml: ")


@pytest.mark.parametrize("split", [{"test_fraction": "40%"}, {"val_fraction": None}, {"min_val": "wide"}])
def test_from_meta_rejects_non_numeric_options(split):
    with pytest.raises(InputError):
        cfg = SplitConfig.from_meta({"split": split}, "site.yaml")
        split_site((100, 250), cfg)


# ---------------------------------------------------------------- the window grid of a block


def test_grid_covers_the_block_with_partial_edge_windows():
    # 70 rows -> ceil(70 / 32) = 3 window rows (the last one runs 26 px past the edge);
    # 45 cols -> ceil(45 / 32) = 2 window columns. Anchored at the block's corner (10, 20).
    block = Block(row0=10, col0=20, rows=70, cols=45)
    assert block.grid(32) == [(10, 20), (10, 52), (42, 20), (42, 52), (74, 20), (74, 52)]
    assert block.count(32) == 6


@pytest.mark.parametrize(("rows", "cols", "window", "expected"), [
    (64, 64, 32, 4),  # exact fit: 2 x 2
    (65, 64, 32, 6),  # one extra row of pixels adds a row of windows: 3 x 2
    (10, 100, 32, 4),  # thinner than a window: 1 x 4
    (100, 250, 128, 2),  # 1 x 2
    (1720, 1469, 32, 54 * 46),  # the paper-scale taiwan training block
])
def test_count_is_ceil_rows_times_ceil_cols(rows, cols, window, expected):
    block = Block(5, 7, rows, cols)
    assert block.count(window) == expected
    assert len(block.grid(window)) == expected


def test_slices_select_the_block():
    grid = np.arange(20 * 30).reshape(20, 30)
    block = Block(2, 3, 4, 5)
    np.testing.assert_array_equal(grid[block.slices], grid[2:6, 3:8])


# ---------------------------------------------------------------- a validation block that can validate


def diagonal_band(shape: tuple[int, int] = (100, 250), width: int = 20) -> np.ndarray:
    """Valid data along a diagonal band (a scene clipped to a valley): the left columns hold only a corner of it."""
    rows, cols = np.indices(shape)
    return np.abs(rows - (cols - 40) * 0.8) < width


def test_a_validation_block_over_a_corner_of_the_data_grows_until_it_can_validate():
    valid = diagonal_band()
    label = np.zeros(valid.shape, np.uint8)
    label[:, ::7] = 1  # landslide pixels everywhere the band is
    default = split_site(valid.shape)  # 32 columns of validation at the left edge
    assert valid[:, :32].sum() < 0.03 * valid[:, :150].sum()  # the band's tip: 2.6% of the training data
    grown = split_site(valid.shape, SplitConfig(), valid, label)
    # by hand: training area = columns 0..149; nominal share 0.5 x 10% of its valid pixels
    per_col = valid[:, :150].sum(axis=0)
    need = 0.05 * per_col.sum()
    depth = int(np.argmax(np.cumsum(per_col) >= need)) + 1
    pos = (valid & (label > 0))[:, :150].sum(axis=0)
    need_pos = min(100, int(np.ceil(0.05 * pos.sum())))
    depth = max(depth, int(np.argmax(np.cumsum(pos) >= need_pos)) + 1, 32)
    assert grown.val == Block(0, 0, 100, depth) and depth > 32
    assert grown.train == Block(0, depth, 100, 150 - depth) and grown.test == default.test  # test never moves
    v = grown.validation
    assert v["grown_from"] == 32 and v["lines"] == depth and v["short"] is None
    assert v["valid_pixels"] == int(valid[:, :depth].sum()) >= need
    assert v["landslide_pixels"] == int(pos[:depth].sum()) >= need_pos


def test_a_validation_block_with_enough_data_keeps_the_papers_depth():
    valid = np.ones((100, 250), bool)
    label = np.zeros((100, 250), np.uint8)
    label[40:60, 5:25] = 1  # 400 landslide pixels inside the 32 validation columns
    split = split_site(valid.shape, SplitConfig(), valid, label)
    assert split.val == split_site(valid.shape).val
    assert split.validation == {"lines": 32, "valid_pixels": 3200, "landslide_pixels": 400,
                                "share_of_valid": round(3200 / 15000, 4), "grown_from": None, "short": None}


def test_a_validation_block_that_cannot_be_enough_keeps_its_depth_and_says_why():
    valid = np.zeros((100, 250), bool)
    valid[:, 140:] = True  # only the last 10 training columns hold data: half the area would not reach them
    split = split_site(valid.shape, SplitConfig(), valid, np.zeros((100, 250), np.uint8))
    assert split.val.cols == 32 and split.validation["grown_from"] is None
    assert "half the training area would not hold 50 and 0" in split.validation["short"]


def test_validation_growth_follows_the_test_side_and_the_site_yaml_keys():
    valid = diagonal_band()[:, ::-1].copy()  # the band's empty corner now at the right
    split = split_site(valid.shape, SplitConfig(test_side="start"), valid, None)
    assert split.test == Block(0, 0, 100, 100) and split.val.col0 + split.val.cols == 250 and split.val.cols > 32
    cfg = SplitConfig.from_meta({"split": {"min_val_share": 0.0, "min_val_positives": 0}})
    assert split_site(valid.shape, cfg, valid, None).val.cols == 32  # growth switched off
    with pytest.raises(InputError, match="min_val_positives must be a non-negative integer"):
        SplitConfig.from_meta({"split": {"min_val_positives": -1}})
    with pytest.raises(InputError, match=r"min_val_share must lie in \[0, 1\]"):
        SplitConfig.from_meta({"split": {"min_val_share": 2}})


def test_metrics_json_states_what_each_validation_block_holds(tiny_run):
    import json

    blocks = json.loads((tiny_run / "metrics.json").read_text())["validation_blocks"]
    assert sorted(blocks) == ["china", "japan", "taiwan"]  # scenario all: every site trains
    for v in blocks.values():  # the synthetic sites need no growth: the paper's split as it was
        assert v["grown_from"] is None and v["short"] is None and v["valid_pixels"] > 0 and v["landslide_pixels"] > 0
