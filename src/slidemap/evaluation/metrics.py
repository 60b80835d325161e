"""Pixel-wise precision / recall / F1 / IoU from TP, FP, FN counts (the paper's metrics)."""

from __future__ import annotations

import numpy as np


def confusion_counts(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> dict[str, int]:
    """TP, FP, FN (and TN) of a binary prediction over the valid pixels."""
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


def pooled(counts: list[dict[str, int]]) -> dict[str, int]:
    """Sum counts over areas: the paper's "All" column pools pixels, it does not average scores."""
    return {k: sum(c[k] for c in counts) for k in ("tp", "fp", "fn", "tn")}
