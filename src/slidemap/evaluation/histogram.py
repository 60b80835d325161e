"""Threshold-free scores from a bounded-memory histogram of probabilities: average precision and the F1-optimal
threshold.

A test area can hold more pixels than memory allows to sort, so the probabilities of landslide and background
pixels are counted into :data:`N_BINS` equal-width bins (``k/n < p <= (k+1)/n`` in float32; ``p = 0`` in the
first): a threshold at a bin edge ``t = k/n`` predicts landslide exactly where ``p > t``, as the maps and the test
counts do (:func:`slidemap.mapping.rasters.binarise`, torchmetrics), both in float32. The counts are additive: areas pool ("all") and DDP ranks sum them.
Average precision from 10 000 bins equals torchmetrics' exact ``BinaryAveragePrecision`` to 1e-3 (tested).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

N_BINS = 10_000
"""Bins of the probability histogram: a threshold resolution of 1e-4; 2 x 80 kB per area."""


def edges(n_bins: int = N_BINS, device: torch.device | str = "cpu") -> torch.Tensor:
    """The bin edges ``k/n`` as float32: probabilities are float32 and the maps compare ``p > t`` in float32 (numpy
    and torch cast a Python float to the array's type), so bins and thresholds are exact at the edges."""
    return torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64).to(device=device, dtype=torch.float32)


def histogram(prob: torch.Tensor, target: torch.Tensor, n_bins: int = N_BINS) -> torch.Tensor:
    """(2, n_bins) float64: background and landslide pixel counts per bin; pass only the pixels to count."""
    p = prob.detach().reshape(-1).to(torch.float32).clamp(0.0, 1.0)
    y = target.detach().reshape(-1).to(torch.long).clamp(0, 1)
    idx = (torch.bucketize(p, edges(n_bins, p.device)) - 1).clamp(0, n_bins - 1)  # e_k < p <= e_k+1
    out = torch.zeros(2 * n_bins, dtype=torch.float64, device=p.device)
    out.scatter_add_(0, y * n_bins + idx, torch.ones_like(p, dtype=torch.float64))
    return out.reshape(2, n_bins)


def _above(hist: Any) -> tuple[np.ndarray, np.ndarray]:
    """(landslide, background) counts with ``p > k/n`` for k = 0..n-1 (cumulative from the top bin)."""
    h = np.asarray(hist, dtype=np.float64)
    neg, pos = h[0], h[1]
    return np.cumsum(pos[::-1])[::-1], np.cumsum(neg[::-1])[::-1]


def average_precision(hist: Any) -> float | None:
    """Average precision (area under the step precision-recall curve, as scikit-learn and torchmetrics): the sum
    over thresholds of the recall gained times the precision there. None without any landslide pixel."""
    tp, fp = _above(hist)
    total = tp[0] if tp.size else 0.0
    if total <= 0:
        return None
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    recall = tp / total
    gained = recall - np.append(recall[1:], 0.0)  # recall gained when lowering the threshold to this bin's edge
    return float(np.sum(gained * precision))


def best_threshold(hist: Any) -> tuple[float, float | None]:
    """The bin edge ``t`` in (0, 1) with the highest F1 of ``p > t`` (ties: the one nearest 0.5) and that F1;
    (0.5, None) without any landslide pixel (F1 is undefined: the paper's threshold stays)."""
    tp, fp = _above(hist)
    n = tp.size
    total = tp[0] if n else 0.0
    if total <= 0:
        return 0.5, None
    fn = total - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12)
    at = edges(n).numpy()[:n].astype(np.float64)
    candidates = np.arange(1, n)  # t = 0 would call every pixel a landslide: outside (0, 1)
    best = f1[candidates].max()
    ties = candidates[np.isclose(f1[candidates], best, rtol=0, atol=1e-12)]
    k = ties[np.argmin(np.abs(at[ties] - 0.5))]
    return float(at[k]), float(f1[k])


class ProbabilityHistogram(Metric):
    """Accumulates :func:`histogram` over batches; pixels whose target is ``ignore_index`` are left out."""

    full_state_update = False

    def __init__(self, n_bins: int = N_BINS, ignore_index: int = -1) -> None:
        super().__init__()
        self.n_bins, self.ignore_index = n_bins, ignore_index
        self.add_state("counts", default=torch.zeros(2, n_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prob: torch.Tensor, target: torch.Tensor) -> None:
        keep = target != self.ignore_index
        self.counts += histogram(prob[keep], target[keep], self.n_bins)

    def compute(self) -> torch.Tensor:
        return self.counts
