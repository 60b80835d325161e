"""Training patches at random positions inside the training areas, new ones each epoch (``augment.offsets``).

The paper's fixed grid shows the model every training pixel at one position in its patch; drawn at random
offsets, a pixel falls anywhere in the window, so the model cannot learn the grid (the blended mosaic then has no
tile-border effect to undo). An epoch draws as many windows as the grid has patches (the same pixels per epoch),
each area in proportion to its grid count. A window never leaves its training area: the areas are the training
blocks alone (validation and test blocks are other arrays), and an area smaller than the window is padded as
nodata, as the grid pads its edge patches. Windows without a valid pixel are drawn again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

REDRAWS = 20
"""Rounds of drawing again the windows that hold no valid pixel (nodata-heavy areas); then they are kept as drawn
(their loss weight is 0, as for an empty grid patch)."""


@dataclass(frozen=True)
class TrainArea:
    """One training block in memory: normalised inputs (C, H, W) with 0 where invalid, label and validity (H, W)."""

    x: np.ndarray
    y: np.ndarray
    valid: np.ndarray

    def grid_count(self, window: int) -> int:
        """Patches of the paper's grid over this area (its share of an epoch)."""
        return math.ceil(self.valid.shape[0] / window) * math.ceil(self.valid.shape[1] / window)


def draw_windows(areas: list[TrainArea], window: int, count: int, seed: int, epoch: int) -> np.ndarray:
    """``count`` windows as rows (area, row, col) of upper-left corners: a function of (seed, epoch) only."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    weights = np.array([a.grid_count(window) for a in areas], float)
    highs = np.array([[max(a.valid.shape[0] - window, 0) + 1, max(a.valid.shape[1] - window, 0) + 1] for a in areas])

    def draw(n: int) -> np.ndarray:
        area = rng.choice(len(areas), size=n, p=weights / weights.sum())
        return np.stack([area, rng.integers(0, highs[area, 0]), rng.integers(0, highs[area, 1])], axis=1)

    out = draw(count)
    for _ in range(REDRAWS):
        empty = [i for i, (a, r, c) in enumerate(out) if not areas[a].valid[r:r + window, c:c + window].any()]
        if not empty:
            break
        out[empty] = draw(len(empty))
    return out


class OffsetWindows(Dataset):
    """(x, y, valid) windows cut at the positions drawn for each epoch; index ``epoch * per_epoch + i`` is window
    ``i`` of ``epoch`` (:class:`EpochSampler` yields such indices), so every process and worker agrees on it."""

    def __init__(self, areas: list[TrainArea], window: int, per_epoch: int, seed: int) -> None:
        if not areas:
            raise ValueError("no training areas to draw windows from")
        self.areas, self.window, self.per_epoch, self.seed = areas, int(window), int(per_epoch), int(seed)
        self._epoch: int | None = None
        self._windows = np.zeros((0, 3), np.int64)

    def __len__(self) -> int:
        return self.per_epoch

    def windows(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._windows = draw_windows(self.areas, self.window, self.per_epoch, self.seed, epoch)
            self._epoch = epoch
        return self._windows

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        epoch, i = divmod(int(index), self.per_epoch)
        a, r, c = self.windows(epoch)[i]
        area, w = self.areas[a], self.window
        rows, cols = area.valid.shape
        h, wd = min(w, rows - r), min(w, cols - c)
        x = np.zeros((area.x.shape[0], w, w), np.float32)
        y = np.zeros((w, w), np.float32)
        v = np.zeros((w, w), bool)
        x[:, :h, :wd] = area.x[:, r:r + h, c:c + wd]
        y[:h, :wd] = area.y[r:r + h, c:c + wd]
        v[:h, :wd] = area.valid[r:r + h, c:c + wd]
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(v)


class EpochSampler(Sampler[int]):
    """Indices ``epoch * n + i`` in a seeded shuffled order. Lightning's ``set_epoch`` sets the epoch (so a resumed
    run draws what it would have drawn); each pass also moves to the next epoch, for wrappers that do not forward
    ``set_epoch`` (Lightning's DistributedSamplerWrapper under DDP)."""

    def __init__(self, per_epoch: int, seed: int) -> None:
        self.per_epoch, self.seed, self.epoch = int(per_epoch), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self) -> Iterator[int]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = torch.randperm(self.per_epoch, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
        return iter((epoch * self.per_epoch + order).tolist())
