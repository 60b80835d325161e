"""Calibration of landslide probabilities: temperature scaling, reliability bins and the expected calibration error.

A network's sigmoid outputs are scores, not frequencies: among pixels it calls 0.9, far fewer or more than 90% may
be landslides. Temperature scaling (Guo et al. 2017) fits one number ``T`` on held-out pixels so that
``sigmoid(logit / T)`` is as likely as possible; since ``T > 0`` keeps the sign of every logit, a single prediction
is above 0.5 exactly when it was before (the training run's test patches, eval.py's grid), only how sure it is
changes. Where probabilities are averaged (overlapping tiles of the blended mosaic, ensemble members, test-time
views), a pixel whose predictions disagree around 0.5 can change side.

Reliability bins are additive (counts, probability sums, landslide counts per bin), so areas pool and DDP ranks
sum them; the expected calibration error computed from them equals torchmetrics' ``BinaryCalibrationError``
(15 equal-width bins, l1 norm) on the same pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torchmetrics import Metric

N_BINS = 15
"""Equal-width probability bins of the ECE and the reliability diagram."""

T_BOUNDS = (0.05, 20.0)
"""Search range of the temperature: beyond it a model is either useless or its logits are near zero everywhere."""


def _as_float64(values: Any) -> np.ndarray:
    return np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)


def temperature_nll(logits: np.ndarray, target: np.ndarray, temperature: float) -> float:
    """Mean binary cross-entropy of ``sigmoid(logits / temperature)`` against 0/1 ``target`` (stable in logits)."""
    z = logits / temperature
    return float(np.mean(np.logaddexp(0.0, z) - target * z))


def fit_temperature(logits: Any, target: Any, valid: Any | None = None,
                    bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature ``T`` minimising the BCE of ``sigmoid(logits / T)`` on the valid pixels.

    A bounded 1-D search on ``log T`` (the loss is smooth and unimodal there); deterministic and cheap.
    Returns 1.0 when there is nothing to fit: no valid pixel, or a single class (any ``T`` is then either
    optimal at a bound or meaningless).

    Args:
        logits, target, valid: arrays or tensors of one shape; ``target`` 0/1, ``valid`` bool (None = all).
    """
    z = _as_float64(logits).ravel()
    y = _as_float64(target).ravel()
    if valid is not None:
        keep = _as_float64(valid).ravel() > 0
        z, y = z[keep], y[keep]
    keep = np.isfinite(z)
    z, y = z[keep], y[keep]
    if z.size == 0 or y.min() == y.max():
        return 1.0
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    best = minimize_scalar(lambda log_t: temperature_nll(z, y, math.exp(log_t)), bounds=(lo, hi), method="bounded",
                           options={"xatol": 1e-4})
    return float(math.exp(best.x))


def bin_sums(prob: torch.Tensor, target: torch.Tensor, n_bins: int = N_BINS) -> torch.Tensor:
    """(3, n_bins) float64: pixels, probability sum and landslide count per equal-width bin.

    Bin ``k`` holds ``k/n <= p < (k+1)/n`` (``p = 1`` in the last), as torchmetrics' ``BinaryCalibrationError``.
    Pass only the pixels to count (valid ones).
    """
    p = prob.detach().reshape(-1).to(torch.float64).clamp(0.0, 1.0)
    y = target.detach().reshape(-1).to(torch.float64)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=p.device)
    idx = (torch.bucketize(p, edges, right=True) - 1).clamp(0, n_bins - 1)
    out = torch.zeros(3, n_bins, dtype=torch.float64, device=p.device)
    out[0].scatter_add_(0, idx, torch.ones_like(p))
    out[1].scatter_add_(0, idx, p)
    out[2].scatter_add_(0, idx, y)
    return out


def reliability_bins(prob: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None,
                     n_bins: int = N_BINS) -> dict[str, list[float]]:
    """Reliability bins of a probability map over its valid (and finite) pixels, as stored in metrics.json."""
    p = np.asarray(prob, np.float64)
    keep = np.isfinite(p) if valid is None else np.asarray(valid, bool) & np.isfinite(p)
    sums = bin_sums(torch.from_numpy(p[keep]), torch.from_numpy(np.asarray(target)[keep].astype(np.float64)), n_bins)
    return bins_record(sums)


def bins_record(sums: torch.Tensor) -> dict[str, list[float]]:
    """JSON-ready bins: ``count``, ``probability_sum``, ``landslides`` per bin (additive across areas and runs)."""
    count, psum, pos = sums.cpu().tolist()
    return {"count": [int(c) for c in count], "probability_sum": [round(v, 6) for v in psum],
            "landslides": [int(round(v)) for v in pos]}


def pool_bins(records: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Bins of several areas (or runs) together: the sums add up."""
    keys = ("count", "probability_sum", "landslides")
    return {k: [sum(vals) for vals in zip(*(r[k] for r in records))] for k in keys}


def ece(bins: dict[str, list[float]]) -> float:
    """Expected calibration error (l1): ``sum_k n_k / N * |mean probability_k - landslide share_k|``; NaN if empty."""
    n = np.asarray(bins["count"], np.float64)
    total = n.sum()
    if total == 0:
        return float("nan")
    ok = n > 0
    gap = np.abs(np.asarray(bins["probability_sum"], np.float64)[ok] - np.asarray(bins["landslides"], np.float64)[ok])
    return float(gap.sum() / total)


class CalibrationBins(Metric):
    """Reliability bins as a torchmetrics metric: summed across batches and DDP ranks.

    ``update(prob, target)`` with ``target`` -1 at pixels to ignore (nodata), as the module's stat scores.
    """

    full_state_update = False

    def __init__(self, n_bins: int = N_BINS) -> None:
        super().__init__()
        self.n_bins = n_bins
        self.add_state("sums", default=torch.zeros(3, n_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prob: torch.Tensor, target: torch.Tensor) -> None:
        keep = target >= 0
        self.sums += bin_sums(prob[keep], target[keep], self.n_bins).to(self.sums.device)

    def compute(self) -> torch.Tensor:
        return self.sums
