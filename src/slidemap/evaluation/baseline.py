"""The rule-based references: landslide = low NDVI (or a strong NDVI loss) on steep ground, thresholds grid-searched
per training area.

``ndvi`` is the single-date rule: NDVI < t and slope >= s. ``rdndvi`` is the two-date rule responders use today
(HazMapper, Scheip & Wegmann 2021): the relative NDVI change from the pre-event image (rdNDVI, negative where
vegetation was lost) below t, with the same slope mask. They show how far an index and slope alone get on a data
set; a learned model has to beat them clearly for the benchmark to mean anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from slidemap.data.sites.site import Site
from slidemap.data.tiling.split import Block, SiteSplit
from slidemap.errors import InputError
from slidemap.evaluation.scoring import area_results, confusion_counts

NDVI_EDGES = np.round(np.arange(-0.20, 0.9001, 0.02), 4)
RDNDVI_EDGES = np.round(np.arange(-200.0, 100.001, 2.0), 4)
"""rdNDVI thresholds: x 100 scale; a forest-to-bare-soil loss (NDVI 0.8 -> 0.1) gives about -74."""
SLOPE_EDGES = np.arange(0.0, 70.001, 1.0)


@dataclass(frozen=True)
class RuleThresholds:
    """Predict a landslide where NDVI < ``ndvi_max`` and slope >= ``slope_min``."""

    ndvi_max: float
    slope_min: float
    channel: ClassVar[str] = "ndvi"

    def predict(self, ndvi: np.ndarray, slope: np.ndarray) -> np.ndarray:
        return (ndvi < self.ndvi_max) & (slope >= self.slope_min)


@dataclass(frozen=True)
class ChangeRuleThresholds:
    """Predict a landslide where rdNDVI < ``rdndvi_max`` (vegetation lost since the pre-event image) and
    slope >= ``slope_min``."""

    rdndvi_max: float
    slope_min: float
    channel: ClassVar[str] = "rdndvi"

    def predict(self, rdndvi: np.ndarray, slope: np.ndarray) -> np.ndarray:
        return (rdndvi < self.rdndvi_max) & (slope >= self.slope_min)


Rule = RuleThresholds | ChangeRuleThresholds
METHODS: dict[str, tuple[type[RuleThresholds] | type[ChangeRuleThresholds], np.ndarray]] = {
    "ndvi": (RuleThresholds, NDVI_EDGES),
    "rdndvi": (ChangeRuleThresholds, RDNDVI_EDGES),
}
"""Rule name -> (its thresholds, the index thresholds searched); the slope thresholds are ``SLOPE_EDGES``."""


def _features(site: Site, block: Block, channel: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = block.slices
    return (site.channel(channel)[rows, cols], site.slope[rows, cols], site.label[rows, cols],
            site.valid[rows, cols])


def fit_rule(areas: list[tuple[Site, Block]], method: str = "ndvi") -> Rule:
    """Grid search for the thresholds with the best pooled F1 over the given training areas.

    Uses 2-D histograms and cumulative sums, so every threshold pair is scored in one pass.
    """
    kind, edges = METHODS[method]
    pos = np.zeros((edges.size + 1, SLOPE_EDGES.size + 1))
    neg = np.zeros_like(pos)
    for site, block in areas:
        index, slope, label, valid = _features(site, block, kind.channel)
        i = np.searchsorted(edges, index[valid], side="right")  # pixel counts when the index max > edge[i-1]
        j = np.searchsorted(SLOPE_EDGES, slope[valid], side="right")
        lab = label[valid].astype(bool)
        np.add.at(pos, (i[lab], j[lab]), 1)
        np.add.at(neg, (i[~lab], j[~lab]), 1)
    # predicted(a, b) = pixels with index bin < a (index < edges[a]) and slope bin > b (slope >= SLOPE_EDGES[b])
    cum_pos = np.cumsum(pos, axis=0)[:-1]  # rows: index max = edges[a]
    cum_neg = np.cumsum(neg, axis=0)[:-1]
    tail_pos = np.cumsum(cum_pos[:, ::-1], axis=1)[:, ::-1][:, 1:]  # cols: slope_min = SLOPE_EDGES[b]
    tail_neg = np.cumsum(cum_neg[:, ::-1], axis=1)[:, ::-1][:, 1:]
    tp = tail_pos
    fp = tail_neg
    fn = pos.sum() - tp
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    a, b = np.unravel_index(int(np.argmax(f1)), f1.shape)
    return kind(float(edges[a]), float(SLOPE_EDGES[b]))


def score_rule(rule: Rule, site: Site, block: Block) -> dict[str, int]:
    """TP/FP/FN of the rule on one area."""
    index, slope, label, valid = _features(site, block, rule.channel)
    return confusion_counts(rule.predict(index, slope), label, valid)


def run_baseline(sites: dict[str, Site], splits: dict[str, SiteSplit],
                 scenarios: dict[str, list[str]], method: str = "ndvi") -> dict:
    """Fit the rule per scenario on its training areas (train + validation blocks) and score every test area.

    The thresholds of each scenario are keyed by name (``ndvi_max`` or ``rdndvi_max``, and ``slope_min``).
    ``rdndvi`` needs every site's pre-event image; a site without one is a one-line InputError naming it.
    """
    if method not in METHODS:
        raise InputError("--method", f"unknown rule {method!r}; choose one of {', '.join(METHODS)}")
    no_index = [site for site in sites.values() if "ndvi" not in site.channels]
    if no_index:  # a sensor without red or nir (an RGB orthophoto): no NDVI, so neither rule can run
        site = no_index[0]
        raise InputError(site.meta.get("path", site.name), f"the {method} rule cannot run on site '{site.name}': NDVI "
                                                           f"needs red and nir bands, the site has "
                                                           f"{', '.join(site.band_names)}")
    lacking = [name for name, site in sites.items() if site.bands_pre is None]
    if METHODS[method][0] is ChangeRuleThresholds and lacking:
        site = sites[lacking[0]]
        raise InputError(site.meta.get("path", site.name), f"site '{site.name}' has no pre-event image (s2_pre.tif): "
                                                           "the rdndvi rule needs one; add it (slidemap site --s2-pre "
                                                           "PRODUCT...) or use --method ndvi")
    out: dict = {"scenarios": {}, "thresholds": {}}
    for scenario, train_sites in scenarios.items():
        areas = [(sites[s], blk) for s in train_sites for blk in (splits[s].train, splits[s].val)]
        rule = fit_rule(areas, method)
        out["scenarios"][scenario] = area_results({name: score_rule(rule, site, splits[name].test)
                                                   for name, site in sites.items()})
        out["thresholds"][scenario] = asdict(rule)
    return out
