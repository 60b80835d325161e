"""The rule-based reference: landslide = low NDVI on steep ground, thresholds grid-searched per training area.

It shows how far NDVI and slope alone get on a data set; a learned model has to beat it clearly for the
benchmark to mean anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slidemap.data.site import Site
from slidemap.data.split import Block, SiteSplit
from slidemap.evaluation.metrics import confusion_counts, pooled, scores

NDVI_EDGES = np.round(np.arange(-0.20, 0.9001, 0.02), 4)
SLOPE_EDGES = np.arange(0.0, 70.001, 1.0)


@dataclass(frozen=True)
class RuleThresholds:
    """Predict a landslide where NDVI < ``ndvi_max`` and slope >= ``slope_min``."""

    ndvi_max: float
    slope_min: float

    def predict(self, ndvi: np.ndarray, slope: np.ndarray) -> np.ndarray:
        return (ndvi < self.ndvi_max) & (slope >= self.slope_min)


def _features(site: Site, block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = block.slices
    return (site.channel("ndvi")[rows, cols], site.slope[rows, cols], site.label[rows, cols],
            site.valid[rows, cols])


def fit_rule(areas: list[tuple[Site, Block]]) -> RuleThresholds:
    """Grid search for the thresholds with the best pooled F1 over the given training areas.

    Uses 2-D histograms and cumulative sums, so every threshold pair is scored in one pass.
    """
    pos = np.zeros((NDVI_EDGES.size + 1, SLOPE_EDGES.size + 1))
    neg = np.zeros_like(pos)
    for site, block in areas:
        ndvi, slope, label, valid = _features(site, block)
        i = np.searchsorted(NDVI_EDGES, ndvi[valid], side="right")  # pixel counts when ndvi_max > edge[i-1]
        j = np.searchsorted(SLOPE_EDGES, slope[valid], side="right")
        lab = label[valid].astype(bool)
        np.add.at(pos, (i[lab], j[lab]), 1)
        np.add.at(neg, (i[~lab], j[~lab]), 1)
    # predicted(a, b) = pixels with ndvi bin < a (ndvi < NDVI_EDGES[a]) and slope bin > b (slope >= SLOPE_EDGES[b])
    cum_pos = np.cumsum(pos, axis=0)[:-1]  # rows: ndvi_max = NDVI_EDGES[a]
    cum_neg = np.cumsum(neg, axis=0)[:-1]
    tail_pos = np.cumsum(cum_pos[:, ::-1], axis=1)[:, ::-1][:, 1:]  # cols: slope_min = SLOPE_EDGES[b]
    tail_neg = np.cumsum(cum_neg[:, ::-1], axis=1)[:, ::-1][:, 1:]
    tp = tail_pos
    fp = tail_neg
    fn = pos.sum() - tp
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    a, b = np.unravel_index(int(np.argmax(f1)), f1.shape)
    return RuleThresholds(ndvi_max=float(NDVI_EDGES[a]), slope_min=float(SLOPE_EDGES[b]))


def score_rule(rule: RuleThresholds, site: Site, block: Block) -> dict[str, int]:
    """TP/FP/FN of the rule on one area."""
    ndvi, slope, label, valid = _features(site, block)
    return confusion_counts(rule.predict(ndvi, slope), label, valid)


def run_baseline(sites: dict[str, Site], splits: dict[str, SiteSplit],
                 scenarios: dict[str, list[str]]) -> dict:
    """Fit the rule per scenario on its training areas (train + validation blocks) and score every test area."""
    out: dict = {"scenarios": {}, "thresholds": {}}
    for scenario, train_sites in scenarios.items():
        areas = [(sites[s], blk) for s in train_sites for blk in (splits[s].train, splits[s].val)]
        rule = fit_rule(areas)
        counts = {name: score_rule(rule, site, splits[name].test) for name, site in sites.items()}
        counts["all"] = pooled(list(counts.values()))
        out["scenarios"][scenario] = {area: {**scores(c["tp"], c["fp"], c["fn"]), **c} for area, c in counts.items()}
        out["thresholds"][scenario] = {"ndvi_max": rule.ndvi_max, "slope_min": rule.slope_min}
    return out
