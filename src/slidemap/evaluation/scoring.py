"""The one scoring path: predictions + labels + validity -> TP/FP/FN/TN -> the paper's pixel metrics per area.

Training (torchmetrics counts on the test patches), eval.py (whole-area mosaics), the rule baselines and the
report all turn counts into results here, so every ``metrics.json`` and every table has one shape:
``{area: {precision, recall, f1, iou, tp, fp, fn, tn}}`` with ``all`` pooled from the areas' counts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

COUNT_KEYS = ("tp", "fp", "fn", "tn")
METRIC_KEYS = ("precision", "recall", "f1", "iou")
POOLED = "all"
"""The paper's "All" column: TP/FP/FN pooled over the test areas, not a mean of their scores."""

Counts = dict[str, int]
AreaResult = dict[str, float | int]


def confusion_counts(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> Counts:
    """TP, FP, FN and TN of a binary prediction over the valid pixels."""
    pred = pred.astype(bool)
    target = target.astype(bool)
    keep = np.ones_like(pred) if valid is None else valid.astype(bool)
    tp = int(np.count_nonzero(pred & target & keep))
    fp = int(np.count_nonzero(pred & ~target & keep))
    fn = int(np.count_nonzero(~pred & target & keep))
    tn = int(np.count_nonzero(keep)) - tp - fp - fn
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, F1, IoU; a ratio with an empty denominator is 0 (nothing predicted / nothing to find)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou}


def pooled(counts: list[Counts]) -> Counts:
    """Sum counts over areas: the paper's "All" column pools pixels, it does not average scores."""
    return {k: sum(int(c[k]) for c in counts) for k in COUNT_KEYS}


def area_result(counts: Counts) -> AreaResult:
    """One area's metrics and the counts they come from."""
    c = {k: int(counts[k]) for k in COUNT_KEYS}
    return {**scores(c["tp"], c["fp"], c["fn"]), **c}


def area_results(counts: Mapping[str, Counts]) -> dict[str, AreaResult]:
    """Every area's result, in the given order, and ``all`` pooled from their counts."""
    results = {name: area_result(c) for name, c in counts.items()}
    results[POOLED] = area_result(pooled(list(counts.values())))
    return results


def score_areas(areas: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> dict[str, AreaResult]:
    """Results of binary predictions per area: ``{name: (pred, target, valid)}`` -> :func:`area_results`."""
    return area_results({name: confusion_counts(*arrays) for name, arrays in areas.items()})
