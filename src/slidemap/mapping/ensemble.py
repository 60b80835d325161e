"""Ensembles of checkpoints and test-time augmentation: a mean calibrated probability and its spread per pixel.

Every member predicts every view of a tile; each prediction is put back on the tile's own pixels and made a
calibrated probability with its member's temperature. The map is their mean; the uncertainty is their standard
deviation (population, ddof 0). Views (``--tta``), as (quarter turns, left-right flip) applied to the input and
undone on the output:

* ``none``: the tile as it is (1 view);
* ``flips``: as it is, flipped left-right, flipped up-down, and both (= turned 180 degrees): 4 views;
* ``d4``: the 8 symmetries of the square: 0, 90, 180 and 270 degree turns, each with and without a left-right flip.

Members must read the same channels at the same window with the same normalisation (the mosaic feeds every
member one normalised input): seeds of one cell of a sweep, for example.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slidemap.data.tiling.patches import Normaliser
from slidemap.errors import InputError
from slidemap.mapping import mosaic
from slidemap.mapping.checkpoint import TrainedModel, same_normaliser

log = logging.getLogger(__name__)

View = tuple[int, bool]
"""Quarter turns (counter-clockwise, as ``np.rot90``) after an optional left-right flip."""

TTA_VIEWS: dict[str, tuple[View, ...]] = {
    "none": ((0, False),),
    "flips": ((0, False), (0, True), (2, True), (2, False)),  # identity, left-right, up-down, both
    "d4": tuple((k, f) for k in range(4) for f in (False, True)),
}


def check_tta(name: str, key: str = "--tta") -> tuple[View, ...]:
    """The views of a test-time augmentation by name; an unknown name is one line naming ``key``."""
    if name not in TTA_VIEWS:
        raise InputError(key, f"unknown test-time augmentation {name!r}; choose one of {', '.join(TTA_VIEWS)}")
    return TTA_VIEWS[name]


def apply_view(tiles: np.ndarray, view: View) -> np.ndarray:
    """The view of (..., h, w) tiles: a left-right flip if asked, then ``k`` quarter turns (square tiles)."""
    k, flip = view
    out = tiles[..., ::-1] if flip else tiles
    return np.rot90(out, k, axes=(-2, -1))


def undo_view(tiles: np.ndarray, view: View) -> np.ndarray:
    """Put a prediction of :func:`apply_view`'s output back on the original pixels."""
    k, flip = view
    out = np.rot90(tiles, -k, axes=(-2, -1))
    return out[..., ::-1] if flip else out


def weights_fingerprint(net: torch.nn.Module) -> str:
    """A hash of a network's weights: the same model under two file names has the same fingerprint."""
    digest = hashlib.sha1()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_distinct(models: Sequence[TrainedModel]) -> None:
    """Refuse one model twice in an ensemble (the same file, or a copy of it): it would weigh twice in the mean and
    shrink the spread, an uncertainty the members do not have."""
    seen: dict[str, Path] = {}
    names: dict[str, Path] = {}
    for m in models:
        if m.card is None and m.data_kind is not None:  # this version's checkpoint without its card
            raise InputError(m.path, "is a checkpoint of a run that did not finish (no model card, no calibration): "
                                     "finish the run (the same command resumes it) or leave it out of the ensemble")
        name = (m.card or {}).get("name")
        if name in names:
            raise InputError(m.path, f"is {name} again, as {names[name]}: an ensemble takes each seed of a cell once")
        if name:
            names[name] = m.path
        key = weights_fingerprint(m.net)
        if key in seen:
            same = "the same file" if Path(m.path).resolve() == Path(seen[key]).resolve() else "the same weights"
            raise InputError(m.path, f"is {same} as {seen[key]}: an ensemble needs distinct members (each seed once)")
        seen[key] = m.path


class Members:
    """What a set of members x test-time views answers the same way whichever engine runs it (checkpoints on torch:
    :class:`Ensemble`; an exported graph on onnxruntime: :class:`slidemap.mapping.onnx_engine.OnnxModel`).
    Subclasses set ``models`` (each with ``window``, ``channels``, ``threshold``, ``model_name``), ``views`` and
    ``path``."""

    models: Sequence[Any]
    views: tuple[View, ...]
    ENGINE_NOTE = ""
    """Appended to :attr:`model_name` (the engine, where it is not torch)."""

    @property
    def path(self) -> Path:
        raise NotImplementedError

    @property
    def size(self) -> int:
        """Predictions per pixel and tile: members x views."""
        return len(self.models) * len(self.views)

    @property
    def spread(self) -> bool:
        """Whether there is a spread to report (more than one prediction per pixel)."""
        return self.size > 1

    @property
    def window(self) -> int:
        return int(self.models[0].window)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.models[0].channels)

    @property
    def threshold(self) -> float:
        """The members' threshold; members that differ leave no default (a threshold must be given)."""
        values = sorted({m.threshold for m in self.models})
        if len(values) > 1:
            listed = ", ".join(map(str, values))
            raise InputError(self.path, f"ensemble members differ in threshold ({listed}): give the map's threshold "
                                        "explicitly")
        return values[0]

    @property
    def model_name(self) -> str:
        names = sorted({m.model_name for m in self.models})
        return "+".join(names) + (f" x{len(self.models)}" if len(self.models) > 1 else "") + self.ENGINE_NOTE


class Ensemble(Members):
    """Checkpoints x test-time views as one predictor of the mosaic (:class:`slidemap.mapping.mosaic.Predictor`).

    It stands in for a :class:`~slidemap.mapping.checkpoint.TrainedModel` where maps are made: ``window``,
    ``channels``, ``normaliser``, ``threshold`` (the first member's), ``path`` and ``model_name``.

    Raises:
        InputError: no member, an unknown ``tta``, or members with other channels, window or normalisation.
    """

    def __init__(self, models: Sequence[TrainedModel], tta: str = "none") -> None:
        if not models:
            raise InputError("--ckpt", "no checkpoint given")
        self.views = check_tta(tta)
        self.tta = tta
        self.models = list(models)
        first = self.models[0]
        for m in self.models[1:]:
            if m.channels != first.channels:
                raise InputError(m.path, f"ensemble members differ in input channels: [{', '.join(m.channels)}] vs "
                                         f"[{', '.join(first.channels)}] in {first.path}")
            if m.window != first.window:
                raise InputError(m.path, f"ensemble members differ in window: {m.window} px vs {first.window} px in "
                                         f"{first.path}")
            if not same_normaliser(m.normaliser, first.normaliser):
                raise InputError(m.path, f"ensemble members differ in normalisation (trained on other data or "
                                         f"another scenario than {first.path}): combine the seeds of one cell")
        if len(self.models) > 1:
            check_distinct(self.models)
        for m in self.models:
            if (m.per_patch, m.patch_size) != (first.per_patch, first.patch_size):
                raise InputError(m.path, f"ensemble members differ in per-patch standardisation (dataset.yaml "
                                         f"'normalise') or patch size from {first.path}: combine the seeds of one cell")
            m.net.eval()

    @property
    def normaliser(self) -> Normaliser:
        return self.models[0].normaliser

    @property
    def standardise(self) -> Normaliser | None:
        """Per-patch models (``normalise: per_patch``): the normaliser each tile gets again after being
        standardised on its own (:func:`~slidemap.mapping.mosaic.iter_mosaic`); None for the others."""
        return self.models[0].normaliser if self.models[0].per_patch else None

    def map_tile(self, tile: int | None, default: int) -> int:
        """The tile a scene is mapped in: ``tile`` or ``default``; a per-patch model's training patch size, since
        its tiles are standardised as its training patches were (another ``--tile`` is refused)."""
        size = self.models[0].patch_size if self.models[0].per_patch else None
        if size is None:
            return int(tile or default)
        if tile is not None and int(tile) != size:
            raise InputError("--tile", f"{self.path} was trained on {size} px patches standardised one by one "
                                       f"(dataset.yaml 'normalise: per_patch'): it maps in tiles of {size} px, "
                                       f"not {tile}")
        return size

    @property
    def path(self) -> Path:
        return self.models[0].path

    def to(self, device: str | torch.device) -> "Ensemble":
        """Move every member's network to ``device`` (in place) and return self."""
        for m in self.models:
            m.to(device)
        return self

    def channels_last(self) -> None:
        """NHWC weights for every member: the bf16 fast path on CPU."""
        for m in self.models:
            m.net.to(memory_format=torch.channels_last)

    def __call__(self, tiles: np.ndarray,
                 autocast: torch.dtype | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean calibrated probability (N, h, w) of every member and view, and its standard deviation (None for a
        single prediction)."""
        if tiles.shape[-1] != tiles.shape[-2] and any(k % 2 for k, _ in self.views):
            raise ValueError(f"quarter turns need square tiles, got {tiles.shape[-2]} x {tiles.shape[-1]}")
        total = np.zeros((tiles.shape[0], *tiles.shape[2:]), np.float64)
        square = np.zeros_like(total)
        for m in self.models:
            for view in self.views:
                p = undo_view(mosaic.predict_tiles(m.net, apply_view(tiles, view), autocast, m.temperature), view)
                total += p
                square += np.square(p, dtype=np.float64)
        mean = total / self.size
        if not self.spread:
            return mean.astype(np.float32), None
        sd = np.sqrt(np.maximum(square / self.size - mean * mean, 0.0))
        return mean.astype(np.float32), sd.astype(np.float32)
