"""The one scoring path: predictions + labels + validity -> TP/FP/FN/TN -> the paper's pixel metrics per area.

Training (torchmetrics counts on the test patches), eval.py (whole-area mosaics), the rule baselines and the
report all turn counts into results here, so every ``metrics.json`` and every table has one shape:
``{area: {precision, recall, f1, iou, mcc, tp, fp, fn, tn}}`` with ``all`` pooled from the areas' counts (training
adds the threshold-free ``average_precision`` and the ``objects`` scores, eval.py its mosaics' ``objects``).

A metric whose denominator is empty is undefined, not 0: precision without any predicted landslide pixel, recall,
F1 and IoU without any reference landslide pixel. It is ``None`` (``null`` in metrics.json), the reason under the
area's ``undefined`` key; the report shows it as n/a and leaves it out of means and claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import math

import numpy as np

COUNT_KEYS = ("tp", "fp", "fn", "tn")
METRIC_KEYS = ("precision", "recall", "f1", "iou")
POOLED = "all"
"""The paper's "All" column: TP/FP/FN pooled over the test areas, not a mean of their scores."""

Counts = dict[str, int]
AreaResult = dict[str, Any]

NO_PREDICTION = "no pixel predicted as landslide"
NO_REFERENCE = "no reference landslide pixel in this area"


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


def scores(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    """Precision, recall, F1, IoU; None where undefined (:func:`undefined_reasons`). With landslides to find but
    none predicted, recall and F1 are 0 (a miss), precision is undefined."""
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fn else None  # = 2PR/(P+R), defined whenever there is a landslide
    iou = tp / (tp + fp + fn) if tp + fn else None
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou}


NO_BACKGROUND = "no reference background pixel in this area"


def mcc(tp: int, fp: int, fn: int, tn: int) -> float | None:
    """Matthews correlation coefficient in [-1, 1]: undefined (None) without reference landslide or background
    pixels; 0 for a constant prediction (all or nothing predicted carries no information), as scikit-learn."""
    if tp + fn == 0 or tn + fp == 0:
        return None
    denominator = math.sqrt(float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn))
    return (float(tp) * tn - float(fp) * fn) / denominator if denominator else 0.0


def undefined_reasons(tp: int, fp: int, fn: int) -> dict[str, str]:
    """Why each undefined metric of :func:`scores` is undefined (empty when all are defined)."""
    reasons = {}
    if tp + fn == 0:
        reasons |= dict.fromkeys(("recall", "f1", "iou"), NO_REFERENCE)
    if tp + fp == 0:
        reasons["precision"] = NO_PREDICTION
    return reasons


def shown(value: float | None) -> str:
    """A metric for a log line: three decimals, or n/a where it is undefined."""
    return "n/a" if value is None else f"{value:.3f}"


def as_number(value: float | None) -> float:
    """A metric as a float for a logger or a sweeper's objective: NaN where it is undefined."""
    return float("nan") if value is None else float(value)


def pooled(counts: list[Counts]) -> Counts:
    """Sum counts over areas: the paper's "All" column pools pixels, it does not average scores."""
    return {k: sum(int(c[k]) for c in counts) for k in COUNT_KEYS}


def area_result(counts: Counts) -> AreaResult:
    """One area's metrics and the counts they come from."""
    c = {k: int(counts[k]) for k in COUNT_KEYS}
    why = undefined_reasons(c["tp"], c["fp"], c["fn"])
    value = mcc(c["tp"], c["fp"], c["fn"], c["tn"])
    if value is None:
        why["mcc"] = NO_REFERENCE if c["tp"] + c["fn"] == 0 else NO_BACKGROUND
    return {**scores(c["tp"], c["fp"], c["fn"]), "mcc": value, **c, **({"undefined": why} if why else {})}


def area_results(counts: Mapping[str, Counts]) -> dict[str, AreaResult]:
    """Every area's result, in the given order, and ``all`` pooled from their counts."""
    results = {name: area_result(c) for name, c in counts.items()}
    results[POOLED] = area_result(pooled(list(counts.values())))
    return results


def score_areas(areas: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> dict[str, AreaResult]:
    """Results of binary predictions per area: ``{name: (pred, target, valid)}`` -> :func:`area_results`."""
    return area_results({name: confusion_counts(*arrays) for name, arrays in areas.items()})
