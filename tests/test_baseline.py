"""The NDVI + slope rule: thresholds known by construction are found, and every scenario is scored per area."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from slidemap.data.sites.site import Site
from slidemap.data.tiling.split import Block, split_site
from slidemap.evaluation.baseline import RuleThresholds, fit_rule, run_baseline, score_rule

# (red B4, nir B8) reflectances and the NDVI = (nir - red) / (nir + red) they give.
SOIL = (0.06, 0.10)  # NDVI 0.04 / 0.16 = 0.25
FOREST = (0.073, 0.127)  # NDVI 0.054 / 0.2 = 0.27
BARE = (0.085, 0.115)  # NDVI 0.03 / 0.2 = 0.15
# Rule grid: NDVI edges every 0.02 from -0.20 (..., 0.24, 0.26, 0.28, ...), slope edges every 1 degree.
# "NDVI < t" keeps 0.25 and drops 0.27 only for t = 0.26.


def layered_site(name: str, layers: list[tuple[tuple[float, float], float, int]], cols: int = 100,
                 rows_per_layer: int = 10) -> Site:
    """Horizontal bands of rows, each one (red, nir), slope and label; the same in every column."""
    rows = rows_per_layer * len(layers)
    bands = np.full((4, rows, cols), 0.05, np.float32)
    slope = np.zeros((rows, cols), np.float32)
    label = np.zeros((rows, cols), np.uint8)
    for k, ((red, nir), s, lab) in enumerate(layers):
        r = slice(k * rows_per_layer, (k + 1) * rows_per_layer)
        bands[2, r], bands[3, r], slope[r], label[r] = red, nir, s, lab
    return Site(name=name, bands=bands, dem=np.zeros((rows, cols), np.float32), slope=slope, label=label,
                valid=np.ones((rows, cols), bool), transform=Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 2_500_000.0),
                crs=CRS.from_epsg(32651))


def site_a() -> Site:
    """Landslides on 30.5 deg; forest on 45 deg; bare flats (river beds) on 29.5 deg."""
    return layered_site("a", [(SOIL, 30.5, 1), (FOREST, 45.0, 0), (BARE, 29.5, 0)])


def site_b() -> Site:
    """Same covers, but landslides on 20.5 deg and bare ground on 19.5 deg."""
    return layered_site("b", [(SOIL, 20.5, 1), (FOREST, 45.0, 0), (BARE, 19.5, 0)])


def whole(site: Site) -> Block:
    return Block(0, 0, *site.shape)


def test_rule_predicts_low_ndvi_on_steep_ground():
    rule = RuleThresholds(ndvi_max=0.3, slope_min=20.0)
    ndvi = np.array([0.1, 0.1, 0.3, 0.5])
    slope = np.array([20.0, 19.9, 40.0, 40.0])
    np.testing.assert_array_equal(rule.predict(ndvi, slope), [True, False, False, False])


def test_fit_finds_the_only_separating_thresholds():
    # Only NDVI < 0.26 keeps the landslides (0.25) and drops the forest (0.27);
    # only slope >= 30 keeps the landslides (30.5) and drops the bare flats (29.5).
    rule = fit_rule([(site_a(), whole(site_a()))])
    assert rule == RuleThresholds(ndvi_max=pytest.approx(0.26), slope_min=30.0)
    site = site_a()
    counts = score_rule(rule, site, whole(site))
    assert counts == {"tp": 1000, "fp": 0, "fn": 0, "tn": 2000}


def test_fit_per_site_thresholds_differ():
    assert fit_rule([(site_b(), whole(site_b()))]) == RuleThresholds(pytest.approx(0.26), 20.0)


def test_fit_ignores_invalid_pixels():
    # 10 rows of invalid "landslides" on 10 deg: were they counted, slope >= 10 would catch 2000 more landslide
    # pixels for 1000 bare false positives (F1 0.86 vs 0.5 for slope >= 30) and win.
    site = layered_site("v", [(SOIL, 30.5, 1), (FOREST, 45.0, 0), (BARE, 29.5, 0), (SOIL, 10.0, 1),
                              (SOIL, 10.0, 1)])
    valid = site.valid.copy()
    valid[30:] = False
    site = Site(site.name, site.bands, site.dem, site.slope, site.label, valid, site.transform, site.crs)
    assert fit_rule([(site, whole(site))]) == RuleThresholds(pytest.approx(0.26), 30.0)


def test_fit_uses_only_the_given_block():
    # Columns 50-99 of this site are site b's layout; fitting on columns 0-49 must give site a's rule.
    a, b = site_a(), site_b()
    mixed = layered_site("m", [(SOIL, 30.5, 1), (FOREST, 45.0, 0), (BARE, 29.5, 0)])
    mixed.slope[:, 50:] = b.slope[:, 50:]
    assert fit_rule([(mixed, Block(0, 0, 30, 50))]) == fit_rule([(a, whole(a))])
    assert fit_rule([(mixed, Block(0, 50, 30, 50))]) == fit_rule([(b, whole(b))])


def test_run_baseline_scores_every_scenario_on_every_test_area_and_all():
    sites = {"a": site_a(), "b": site_b()}
    splits = {name: split_site(site.shape) for name, site in sites.items()}
    # (30, 100) grids: test = the last 40 columns, so each cover has 10 x 40 = 400 test pixels per site.
    assert all(s.test == Block(0, 60, 30, 40) for s in splits.values())
    out = run_baseline(sites, splits, {"all": ["a", "b"], "a": ["a"], "b": ["b"]})
    json.dumps(out)  # plain JSON types only

    assert list(out["scenarios"]) == ["all", "a", "b"]
    for per_area in out["scenarios"].values():
        assert list(per_area) == ["a", "b", "all"]
        for m in per_area.values():
            assert set(m) - {"undefined"} == {"precision", "recall", "f1", "iou", "mcc", "tp", "fp", "fn", "tn"}

    # Pooled over both training areas (n px per cover and site): slope >= 20 gives TP 2n, FP n (a's bare flats):
    # F1 0.8; slope >= 30 gives TP n, FN n: F1 2/3. So "all" learns site b's rule.
    assert out["thresholds"] == {"all": {"ndvi_max": pytest.approx(0.26), "slope_min": 20.0},
                                 "a": {"ndvi_max": pytest.approx(0.26), "slope_min": 30.0},
                                 "b": {"ndvi_max": pytest.approx(0.26), "slope_min": 20.0}}
    a = out["scenarios"]["a"]
    assert (a["a"]["tp"], a["a"]["fp"], a["a"]["fn"]) == (400, 0, 0)
    assert a["a"]["f1"] == 1.0
    assert (a["b"]["tp"], a["b"]["fp"], a["b"]["fn"]) == (0, 0, 400)  # b's slides sit below 30 deg
    assert (a["b"]["precision"], a["b"]["recall"], a["b"]["f1"]) == (None, 0.0, 0.0)  # nothing predicted: no P
    assert (a["all"]["tp"], a["all"]["fp"], a["all"]["fn"]) == (400, 0, 400)
    assert a["all"]["f1"] == pytest.approx(2 / 3)

    b = out["scenarios"]["b"]
    assert (b["a"]["tp"], b["a"]["fp"], b["a"]["fn"]) == (400, 400, 0)  # a's bare flats at 29.5 deg pass too
    assert (b["a"]["precision"], b["a"]["recall"], b["a"]["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert b["b"]["f1"] == 1.0
    # "All" pools TP 800, FP 400, FN 0: P 2/3, R 1, F1 0.8 (the mean of the per-area F1s would be 0.833).
    assert (b["all"]["precision"], b["all"]["recall"], b["all"]["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    # TN: a's forest (400; its bare flats are FP) + b's forest and bare flats (800).
    assert b["all"]["tn"] == b["a"]["tn"] + b["b"]["tn"] == 400 + 800
    assert out["scenarios"]["all"] == out["scenarios"]["b"]


def test_run_baseline_fits_on_training_and_validation_blocks_only():
    # Site a's test columns (60-99) get site b's slopes: a rule fitted there would be b's.
    a = site_a()
    a.slope[:, 60:] = site_b().slope[:, 60:]
    splits = {"a": split_site(a.shape)}
    out = run_baseline({"a": a}, splits, {"a": ["a"]})
    assert out["thresholds"]["a"]["slope_min"] == 30.0
    assert out["scenarios"]["a"]["a"]["recall"] == 0.0  # the test slides (20.5 deg) are missed
