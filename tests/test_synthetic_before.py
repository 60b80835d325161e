"""The synthetic pre-event image (issue 8 item 3): the same ground before the event, with realistic differences."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import rasterio
import yaml
from scipy import ndimage

from slidemap.cli import scenarios_for
from slidemap.data.sites.indices import dndvi, ndvi
from slidemap.data.sites.reader import read_sites
from slidemap.data.synthetic import before as B
from slidemap.data.synthetic.specs import SITES
from slidemap.data.synthetic.writer import build_site
from slidemap.data.tiling.split import split_sites
from slidemap.evaluation.baseline import run_baseline
from slidemap.reporting.describe import describe_sites

NAMES = tuple(SITES)


@pytest.fixture(scope="module")
def sites(synthetic_root):
    return read_sites(synthetic_root)


def _ndvi(bands: np.ndarray) -> np.ndarray:
    return ndvi(bands[2], bands[3])


@pytest.mark.parametrize("name", NAMES)
def test_pre_image_is_written_on_the_post_grid_with_named_bands(synthetic_root, name):
    with rasterio.open(synthetic_root / name / "s2.tif") as post, \
            rasterio.open(synthetic_root / name / "s2_pre.tif") as pre:
        assert (pre.crs, pre.transform, pre.shape, pre.dtypes) == (post.crs, post.transform, post.shape, post.dtypes)
        assert pre.descriptions == ("B2", "B3", "B4", "B8") and pre.nodata == 0
        dn = pre.read()
    masked = (dn == 0).all(axis=0)
    assert ((dn == 0).any(axis=0) == masked).all()  # a masked pixel is no-data in every band
    assert 0.005 < masked.mean() < 0.05  # one cloud + shadow, within the 95% coverage rule
    meta = yaml.safe_load((synthetic_root / name / "site.yaml").read_text())["pre_event"]
    assert 0.2 <= float(np.hypot(*meta["misregistration_px"])) <= 0.5
    assert meta["cloud_masked_share"] == pytest.approx(masked.mean(), abs=1e-4)


def test_the_post_image_does_not_depend_on_the_pre_image(monkeypatch):
    """The pre-event image draws from its own random stream: the single-date benchmark is unchanged by it."""
    spec = SITES["china"]
    first = build_site(spec, seed=5, scale=0.02)
    monkeypatch.setitem(B.BEFORE, "china", dataclasses.replace(B.BEFORE["china"], cloud_share=0.03, haze=0.1,
                                                               reactivated=0.9))
    second = build_site(spec, seed=5, scale=0.02)
    assert np.array_equal(first["dn"], second["dn"])
    pre, hazier = first["dn_pre"], second["dn_pre"]
    assert (pre != hazier).mean() > 0.9  # the changed settings reach the whole pre-event image
    assert hazier[0][hazier[0] > 0].mean() > pre[0][pre[0] > 0].mean() + 500  # B2: +0.1 haze is ~ +1000 DN
    assert (hazier[0] == 0).mean() > (pre[0] == 0).mean()  # a larger cloud share masks more pixels


def test_the_pre_image_draws_from_its_own_random_stream(monkeypatch):
    """A fresh generator of its own, not the post image's: draws for the pre image can never move the post image."""
    from slidemap.data.synthetic import writer

    states = {}

    def spy(name, real):
        def wrapped(rng, *args, **kwargs):
            states[name] = rng.bit_generator.state  # as the renderer receives it
            return real(rng, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(writer, "render", spy("post", writer.render))
    monkeypatch.setattr(writer, "render_before", spy("pre", writer.render_before))
    build_site(SITES["china"], seed=5, scale=0.02)
    own = np.random.default_rng([5, list(SITES).index("china"), 20_000, 1]).bit_generator.state
    assert states["pre"] == own and states["post"] != own


@pytest.mark.parametrize("name", NAMES)
def test_the_events_landslides_are_absent_before_and_the_rest_mostly_unchanged(sites, name):
    site = sites[name]
    valid = site.valid
    change = dndvi(_ndvi(site.bands), _ndvi(site.bands_pre))
    slide = site.label.astype(bool)
    core = ndimage.binary_erosion(slide, iterations=1) & valid  # away from mixed boundary pixels
    off = change[~slide & valid]
    assert abs(np.median(off)) < 0.1, name  # elsewhere mostly the same ground (up to the season)
    # vegetation lost on most landslides; reactivated older scars and runouts over river beds change less
    assert np.percentile(change[core], 25) < -0.2, name
    assert np.median(change[core]) < np.median(off) - 0.15, name
    assert site.meta["pre_event_coverage"] >= 0.95


@pytest.mark.parametrize("name", NAMES)
def test_bare_confounders_are_bare_in_both_dates(sites, name):
    """River beds, rock and bare fields of the post image were (mostly) bare before too: not change."""
    site = sites[name]
    off = ~site.label.astype(bool) & site.valid
    bare_after = (_ndvi(site.bands) < 0.3) & off
    assert bare_after.sum() > 500
    bare_before = _ndvi(site.bands_pre)[bare_after] < 0.3
    # Japan's harvest turned many green fields bare between the dates, so fewer of its bare fields were bare before
    assert bare_before.mean() > (0.3 if name == "japan" else 0.5), name


@pytest.mark.parametrize("name", NAMES)
def test_false_change_exists_off_the_inventory(sites, name):
    """Harvest, logging, reworked river beds and the season give vegetation loss that is not a landslide."""
    site = sites[name]
    off = ~site.label.astype(bool) & site.valid
    change = dndvi(_ndvi(site.bands), _ndvi(site.bands_pre))
    assert (change[off] < -0.3).mean() > 0.004, name


def test_misregistration_shifts_content_by_the_drawn_subpixel_offset():
    rng = np.random.default_rng(0)
    cols = np.tile(np.arange(40, dtype=np.float32), (30, 1))  # value = column
    rows = np.tile(np.arange(30, dtype=np.float32)[:, None], (1, 40))  # value = row
    shifted, (dy, dx) = B.misregister(rng, np.stack([cols, rows, cols, rows]))
    assert 0.2 <= np.hypot(dy, dx) <= 0.5
    inner = (slice(3, -3), slice(3, -3))
    np.testing.assert_allclose(shifted[0][inner], cols[inner] - dx, atol=1e-4)  # content moved by +dx columns
    np.testing.assert_allclose(shifted[1][inner], rows[inner] - dy, atol=1e-4)


def test_describe_reports_the_pre_image(sites):
    desc = describe_sites(sites)["sites"]
    for name in NAMES:
        assert desc[name]["pre_event"], name


def test_the_rdndvi_rule_is_kept_honest_by_false_change(sites):
    """Issue 8: the two-date rule responders use stays at or below 0.70 F1 on every test area of the default data."""
    result = run_baseline(sites, split_sites(sites), scenarios_for(list(sites)), method="rdndvi")
    f1 = {(s, a): m["f1"] for s, per_area in result["scenarios"].items() for a, m in per_area.items()}
    assert len(f1) == 16
    assert all(0.0 < v <= 0.70 for v in f1.values()), f1
    own = [f1[(n, n)] for n in NAMES]
    transfer = [f1[(s, t)] for s in NAMES for t in NAMES if s != t]
    assert np.mean(own) - np.mean(transfer) >= 0.10  # thresholds tuned on one site lose F1 on the others
