"""Cut areas into the regular window grid, in memory, and normalise with training-area statistics."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from slidemap.data.sites.channels import canonical_all
from slidemap.data.sites.site import Site
from slidemap.data.tiling.split import Block


@dataclass(frozen=True)
class Patches:
    """Grid patches of one or more areas: inputs (N, C, w, w), labels and valid masks (N, w, w).

    ``origins`` holds (row, col) of each patch in its site; padded pixels past an area's edge are invalid.
    """

    x: np.ndarray
    y: np.ndarray
    valid: np.ndarray
    origins: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def any_valid(self) -> bool:
        """Whether any pixel can be scored (a test area without one is refused before training)."""
        return bool(self.valid.any())

    @staticmethod
    def concat(parts: list["Patches"]) -> "Patches":
        return Patches(
            x=np.concatenate([p.x for p in parts]), y=np.concatenate([p.y for p in parts]),
            valid=np.concatenate([p.valid for p in parts]), origins=np.concatenate([p.origins for p in parts]),
        )


@dataclass(frozen=True)
class Normaliser:
    """Per-channel standardisation; statistics come from the scenario's training areas only."""

    channels: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    def __call__(self, stack: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out = (stack - self.mean[:, None, None]) / self.std[:, None, None]
        return np.where(valid[None], out, 0.0).astype(np.float32)

    def to_dict(self) -> dict:
        return {"channels": list(self.channels), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normaliser":
        return cls(canonical_all(d["channels"]), np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def fit_statistics(channels: tuple[str, ...],
                   pieces: Iterable[tuple[Iterable[np.ndarray], np.ndarray]]) -> Normaliser | None:
    """The Normaliser of some training pixels: per channel, mean and population std over the valid pixels.

    Every normaliser a checkpoint keeps is fitted here, so sites and Landslide4Sense agree to the bit: each piece
    is (one array per channel, their valid mask), summed in float64 piece by piece; std never falls below 1e-6
    (a constant channel would divide by zero). None when no pixel is valid (each caller says why in its terms).
    """
    total = np.zeros(len(channels))
    sq = np.zeros(len(channels))
    n = 0
    for values, valid in pieces:
        for k, channel in enumerate(values):
            v = channel[valid].astype(np.float64)
            total[k] += v.sum()
            sq[k] += np.square(v).sum()
        n += int(valid.sum())
    if n == 0:
        return None
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0.0))
    return Normaliser(tuple(channels), mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))


def fit_normaliser(areas: list[tuple[Site, Block]], channels: tuple[str, ...]) -> Normaliser:
    """Mean and standard deviation of each channel over the valid pixels of the given areas."""
    def pieces() -> Iterator[tuple[Iterator[np.ndarray], np.ndarray]]:
        for site, block in areas:
            rows, cols = block.slices
            yield (site.channel(name)[rows, cols] for name in channels), site.valid[rows, cols]

    normaliser = fit_statistics(channels, pieces())
    if normaliser is None:
        raise ValueError("no valid pixels in the training areas")
    return normaliser


def cut_patches(stack: np.ndarray, label: np.ndarray, valid: np.ndarray, block: Block, window: int) -> Patches:
    """Regular non-overlapping windows over ``block``; pixels outside the block are zero and invalid.

    ``stack`` is the already-normalised (C, H, W) input of the whole site. Patches with no valid pixel are
    dropped (they carry no signal for loss or metrics).
    """
    origins = block.grid(window)
    c = stack.shape[0]
    x = np.zeros((len(origins), c, window, window), np.float32)
    y = np.zeros((len(origins), window, window), np.uint8)
    v = np.zeros((len(origins), window, window), bool)
    r_end, c_end = block.row0 + block.rows, block.col0 + block.cols
    for i, (r, col) in enumerate(origins):
        h, w = min(window, r_end - r), min(window, c_end - col)
        x[i, :, :h, :w] = stack[:, r:r + h, col:col + w]
        y[i, :h, :w] = label[r:r + h, col:col + w]
        v[i, :h, :w] = valid[r:r + h, col:col + w]
    keep = v.reshape(len(origins), -1).any(axis=1)
    return Patches(x=x[keep], y=y[keep], valid=v[keep], origins=np.asarray(origins, np.int64).reshape(-1, 2)[keep])
