"""Patch datasets too large for memory: tiles read from their files when a batch asks for them.

A 20,000-patch, 14-channel, 128 px dataset is 18 GiB as float32: holding it (today's in-memory path, fastest for the
sizes of shared/real) does not fit a laptop, and a memory-mapped cache still counts every touched page in the
process's resident memory. Here each tile is read from its image file on demand (the last image is kept, so the
tiles of one patch read it once in order), standardised (``per_patch``) and normalised on the way. The normaliser
and the units guard's distribution cannot see every pixel before the first step without reading the whole dataset
first, so they are fitted on a seeded sample of train patches; the checkpoint records how many (``normaliser_fit``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from slidemap.data.tiling.patches import Normaliser

PairReader = Callable[[Path, Path], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
"""(image, mask) -> inputs (C, H, W) float32 in physical units, 0/1 mask, valid (scored), seen (inputs valid)."""

MEMORY_BUDGET = 2 * 1024**3
"""``stream: auto`` streams when the inputs of every split would take more than this in memory (bytes)."""


def should_stream(setting: bool | str, patches: int, channels: int, shape: tuple[int, int]) -> bool:
    """``data.stream``: true, false, or ``auto`` (stream when the float32 inputs exceed :data:`MEMORY_BUDGET`)."""
    if setting == "auto":
        return patches * channels * shape[0] * shape[1] * 4 > MEMORY_BUDGET
    return bool(setting)


def standardise_patch(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """One patch (C, H, W) standardised by its own mean and std per channel over its valid pixels
    (``normalise: per_patch``: 8-bit renderings stretched one by one share no brightness scale); invalid pixels 0.
    A constant channel keeps std 1e-6, as the dataset normaliser does."""
    if not valid.any():
        return np.zeros_like(x)
    values = x[:, valid].astype(np.float64)
    mean, std = values.mean(axis=1), np.maximum(values.std(axis=1), 1e-6)
    out = (x - mean[:, None, None].astype(np.float32)) / std[:, None, None].astype(np.float32)
    return np.where(valid[None], out, 0.0).astype(np.float32)


def sample_indices(count: int, size: int, seed: int) -> list[int]:
    """``size`` of ``count`` train patches drawn without replacement by ``seed``, in file order (all when fewer)."""
    if size <= 0 or size >= count:
        return list(range(count))
    return sorted(np.random.default_rng(seed).choice(count, size, replace=False).tolist())


def sample_pieces(pairs: list[tuple[Path, Path]], read: PairReader, chosen: list[int],
                  per_patch: bool) -> Iterator[tuple[Iterator[np.ndarray], np.ndarray]]:
    """The sampled train patches one by one, as the statistics functions take them (``per_patch``: standardised
    first, as the in-memory path fits its normaliser after standardising)."""
    for i in chosen:
        x, _, _, seen = read(*pairs[i])
        if per_patch:
            x = standardise_patch(x, seen)
        yield (x[k] for k in range(x.shape[0])), seen


class StreamedPatches(Dataset):
    """The tiles of some patches, read from their files per item: (x, y as float, valid) like the in-memory loader.

    Args:
        pairs: (image, mask) files, one patch each.
        read: Reads one pair in physical units (:data:`PairReader`).
        shape: Every patch's (rows, cols); ``window`` must divide both.
        window: Tile size.
        normaliser: Set once fitted (:func:`slidemap.data.patchsets.folder.prepare`); items need it.
        per_patch: Standardise each patch on its own before the normaliser.
    """

    def __init__(self, pairs: list[tuple[Path, Path]], read: PairReader, shape: tuple[int, int], window: int,
                 per_patch: bool = False) -> None:
        self.pairs, self.read, self.shape, self.window, self.per_patch = pairs, read, shape, window, per_patch
        self.normaliser: Normaliser | None = None
        rows, cols = shape[0] // window, shape[1] // window
        img, r, c = np.meshgrid(np.arange(len(pairs)), np.arange(rows) * window, np.arange(cols) * window,
                                indexing="ij")
        self.origins = np.stack([img.ravel(), r.ravel(), c.ravel()], axis=1).astype(np.int64)
        self._cached: tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self.labelled = True  # whether any mask labels a pixel (from the structure check's histograms)

    def any_valid(self) -> bool:
        """Whether any pixel can be scored, as far as the masks say (images are read only when scored)."""
        return self.labelled

    def __len__(self) -> int:
        return len(self.origins)

    def patch(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patch ``index`` normalised (C, H, W), its mask and its scored pixels; the last one read is kept."""
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        assert self.normaliser is not None, "fit the normaliser before reading items"
        x, y, valid, seen = self.read(*self.pairs[index])
        if self.per_patch:
            x = standardise_patch(x, seen)
        out = (self.normaliser(x, seen), y, valid)
        self._cached = (index, out)
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index, r, c = (int(v) for v in self.origins[i])
        x, y, valid = self.patch(index)
        w = self.window
        return (torch.from_numpy(np.ascontiguousarray(x[:, r:r + w, c:c + w])),
                torch.from_numpy(y[r:r + w, c:c + w].astype(np.float32)),
                torch.from_numpy(np.ascontiguousarray(valid[r:r + w, c:c + w])))


@dataclass
class StreamedMasks:
    """The test patches' masks and scored pixels (N, H, W), read on first use (after training: scoring needs them,
    the first step does not). Stands where the in-memory path keeps the whole test split."""

    patches: StreamedPatches
    names: tuple[str, ...]
    _read: tuple[np.ndarray, np.ndarray] | None = None

    def _masks(self) -> tuple[np.ndarray, np.ndarray]:
        if self._read is None:
            n, shape = len(self.patches.pairs), self.patches.shape
            y, valid = np.empty((n, *shape), np.uint8), np.empty((n, *shape), bool)
            for i, pair in enumerate(self.patches.pairs):
                _, y[i], valid[i], _ = self.patches.read(*pair)
            self._read = (y, valid)
        return self._read

    @property
    def y(self) -> np.ndarray:
        return self._masks()[0]

    @property
    def valid(self) -> np.ndarray:
        return self._masks()[1]

    def __len__(self) -> int:
        return len(self.names)
