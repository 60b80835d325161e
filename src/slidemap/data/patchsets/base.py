"""Patch datasets (image + mask pairs in a ready or drawn train/val/test split) served as windows to Lightning.

A patch set is not a site: no regions, often no georeference, just patches of one size. Every such source
(Landslide4Sense's HDF5 release, a folder of GeoTIFF / PNG / NumPy pairs) only reads its three splits into
:class:`PatchSplit` arrays in physical units; the rest is shared here, so the sources agree on how the
normaliser is fitted (train split only), how patches are cut into windows and how predictions go back on them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from slidemap.data.loading.datamodule import PatchDataModule
from slidemap.data.patchsets.layout import ROLES
from slidemap.data.patchsets.stream import StreamedMasks, StreamedPatches, standardise_patch
from slidemap.data.sites.units import REFLECTANCE, Distribution, sample_distribution, units_of
from slidemap.data.tiling.patches import Normaliser, Patches, fit_statistics
from slidemap.errors import InputError

log = logging.getLogger(__name__)

_STAT_CHUNK = 256  # images per step when fitting the normaliser: bounded float64 temporaries on thousands of patches


@dataclass(frozen=True)
class PatchSplit:
    """One split in memory: the chosen channels (N, C, H, W) float32 (0 where invalid), masks, validity, names.

    ``valid`` is where loss and scores count (input valid and labelled); ``inputs_valid``, when given, is where the
    inputs are valid, labelled or not: sparse labels (ArcGIS exports label 0.3% of pixels) must not blank the
    context the model sees around them, so statistics and normalisation use it.
    """

    x: np.ndarray
    y: np.ndarray
    valid: np.ndarray
    names: tuple[str, ...]
    inputs_valid: np.ndarray | None = None

    @property
    def seen(self) -> np.ndarray:
        """Where the inputs are valid (``inputs_valid``, else ``valid``)."""
        return self.valid if self.inputs_valid is None else self.inputs_valid

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _pieces(train: PatchSplit, channels: tuple[str, ...]) -> Iterator[tuple[Iterator[np.ndarray], np.ndarray]]:
    """The train split in chunks of images, as the statistics functions take them (bounded float64 temporaries)."""
    for s in range(0, len(train), _STAT_CHUNK):
        x = train.x[s:s + _STAT_CHUNK]
        yield (x[:, k] for k in range(len(channels))), train.seen[s:s + _STAT_CHUNK]


def fit_normaliser(train: PatchSplit, channels: tuple[str, ...], what: str = "the train split") -> Normaliser:
    """Mean and standard deviation of each channel over the valid pixels of the train split only."""
    normaliser = fit_statistics(channels, _pieces(train, channels))
    if normaliser is None:
        raise InputError(None, f"{what} has no valid (finite) pixel: cannot fit the normalisation")
    return normaliser


def fit_distribution(train: PatchSplit, channels: tuple[str, ...]) -> Distribution:
    """The train split's per-channel distribution in physical units, for the checkpoint's units guard."""
    distribution = sample_distribution(channels, _pieces(train, channels))
    assert distribution is not None, "fit_normaliser refuses a train split without a valid pixel first"
    return distribution


def normalise(split: PatchSplit, normaliser: Normaliser) -> None:
    """Standardise a split in place, image by image (no second copy of the train split), invalid pixels to 0."""
    for i in range(len(split)):
        split.x[i] = normaliser(split.x[i], split.seen[i])


def tiles_patch(window: int, shape: tuple[int, int]) -> bool:
    """Whether ``window`` cuts a patch of ``shape`` (rows, cols) into whole tiles without overlap."""
    return window > 0 and shape[0] % window == 0 and shape[1] % window == 0


def cut_windows(split: PatchSplit, window: int) -> Patches:
    """Non-overlapping ``window`` tiles of every patch (a window of the patch size keeps it whole); all-invalid
    tiles dropped.

    ``origins`` holds (image index, row, col) of each tile, so predictions can be put back on their image.
    """
    n, (h, w) = len(split), split.valid.shape[1:]
    kr, kc = h // window, w // window

    def tiles(a: np.ndarray) -> np.ndarray:  # (n, ..., h, w) -> (n*kr*kc, ..., window, window), row-major tiles
        lead = a.shape[1:-2]
        a = a.reshape(n, *lead, kr, window, kc, window)
        a = np.moveaxis(a, (-4, -2), (1, 2))
        return a.reshape(n * kr * kc, *lead, window, window)

    img, rows, cols = np.meshgrid(np.arange(n), np.arange(kr) * window, np.arange(kc) * window, indexing="ij")
    origins = np.stack([img.ravel(), rows.ravel(), cols.ravel()], axis=1).astype(np.int64)
    x, y, v = tiles(split.x), tiles(split.y), tiles(split.valid)
    keep = v.reshape(len(v), -1).any(axis=1)
    if keep.all():
        return Patches(x=x, y=y, valid=v, origins=origins)
    return Patches(x=x[keep], y=y[keep], valid=v[keep], origins=origins[keep])


@dataclass(frozen=True)
class PatchSetData:
    """Everything a run needs, built by the pure functions above (testable without Lightning)."""

    normaliser: Normaliser
    train: Patches | StreamedPatches
    val: Patches | StreamedPatches
    test: Patches | StreamedPatches
    test_split: PatchSplit | StreamedMasks
    distribution: Distribution | None = None
    optical_unit: str = REFLECTANCE
    per_patch: bool = False
    normaliser_fit: dict[str, Any] | None = None  # streamed: the seeded sample of train patches it was fitted on


def prepare_splits(splits: dict[str, PatchSplit], window: int, channels: tuple[str, ...],
                   optical_unit: str = REFLECTANCE, what: str = "the train split",
                   per_patch: bool = False) -> PatchSetData:
    """Normalise every split with the train split's statistics and cut each into windows (in place: the arrays
    are the reader's, not copied). ``per_patch``: each patch is first standardised on its own
    (:func:`standardise_patch`); the train distribution is still recorded in physical units."""
    distribution = fit_distribution(splits["train"], channels) if splits["train"].seen.any() else None
    if per_patch:
        for split in splits.values():
            for i in range(len(split)):
                split.x[i] = standardise_patch(split.x[i], split.seen[i])
    normaliser = fit_normaliser(splits["train"], channels, what)
    assert distribution is not None, "fit_normaliser refuses a train split without a valid pixel first"
    for split in splits.values():
        normalise(split, normaliser)
    return PatchSetData(normaliser, *(cut_windows(splits[r], window) for r in ROLES), test_split=splits["test"],
                        distribution=distribution, optical_unit=optical_unit, per_patch=per_patch)


class PatchSetDataModule(PatchDataModule):
    """The DataModule of every patch set: a subclass reads its splits, this serves them like ``SiteDataModule``.

    A subclass implements :meth:`read_data` (check the settings, read the three splits in physical units and
    return them prepared, e.g. with :func:`prepare_splits`) and :attr:`area` (the one test area's name).
    """

    def read_data(self) -> PatchSetData:
        """Check the settings and read, normalise and cut the three splits."""
        raise NotImplementedError

    @property
    def area(self) -> str:
        """The name of the one test area (metrics.json's key next to the pooled ``all``)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Read everything once (errors are raised here, not inside Hydra's instantiate)."""
        if self.data is not None:
            return
        start = time.perf_counter()
        self.data = self.read_data()
        log.info("%s ready in %.1f s: %d train, %d val, %d test windows of %d px", self.area,
                 time.perf_counter() - start, len(self.data.train), len(self.data.val), len(self.data.test),
                 self.window)

    @property
    def test_areas(self) -> list[str]:
        """One test area: the whole test split."""
        return [self.area]

    @property
    def train_site_names(self) -> list[str]:
        return [self.area]

    def checkpoint_info(self) -> dict[str, Any]:
        """Channels, their units and the train split's distribution, window and normaliser: what mapping new data
        needs."""
        assert self.data is not None, "call setup() first"
        info = {"channels": list(self.channels), "window": self.window,
                "normaliser": self.data.normaliser.to_dict(), "train_sites": self.train_site_names,
                "units": list(units_of(self.channels, self.data.optical_unit)),
                "distribution": self.data.distribution.to_dict()}
        if self.data.per_patch:  # mapping standardises each tile of the patch size on its own, then normalises
            info["normalise"] = "per_patch"
            info["patch_size"] = [int(s) for s in self.data.test_split.valid.shape[1:]] \
                if isinstance(self.data.test_split, PatchSplit) else list(self.data.test.shape)
        if self.data.normaliser_fit is not None:
            info["normaliser_fit"] = self.data.normaliser_fit
        return info

    def test_probabilities(self, predictions: list[list[torch.Tensor]] | list[torch.Tensor]) -> np.ndarray:
        """Tile probabilities put back on their test images (N, H, W); NaN where no tile was scored.

        ``training.run.predict_areas`` gives a list of batches per area; ``trainer.predict`` gives a flat list for
        a single dataloader. Both are accepted.
        """
        assert self.data is not None, "call setup() first"
        batches = predictions[0] if predictions and not isinstance(predictions[0], torch.Tensor) else predictions
        probs = torch.cat(list(batches)).float().numpy() if batches else np.zeros((0, self.window, self.window))
        out = np.full(self.data.test_split.y.shape, np.nan, np.float32)
        for (i, r, c), p in zip(self.data.test.origins, probs):
            out[i, r:r + self.window, c:c + self.window] = p
        return np.where(self.data.test_split.valid, out, np.nan)

    def test_patch_sets(self) -> list[Patches]:
        """The test tiles: one test area."""
        assert self.data is not None
        return [self.data.test]
