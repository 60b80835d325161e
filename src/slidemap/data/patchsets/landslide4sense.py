"""Landslide4Sense (iarai, 2022) as a ready train/valid/test split: HDF5 patches -> normalised windows -> loaders.

The official layout is ``{TrainData,ValidData,TestData}/img/image_N.h5`` (key ``img``, (128, 128, 14): Sentinel-2
B1..B12, then slope, then DEM) with ``.../mask/mask_N.h5`` (key ``mask``, 0/1, (128, 128)). It is not a site
(no georeference, no regions): this module is its reader, and the patch-set DataModule
(:mod:`slidemap.data.patchsets.base`, shared with ``data=patches``) serves it with the interface of ``SiteDataModule``:
TrainData trains (and alone sets the normalisation), ValidData drives early stopping, TestData is one test area.

The release does not store physical values: each channel is divided by a per-channel mean
(:data:`~slidemap.data.patchsets.l4s_release.STORED_SCALE`).
:func:`to_physical` multiplies it back and converts the bands to reflectance as the site reader does, so a
checkpoint trained here takes the same units as one trained on sites and maps ``slidemap site`` scenes correctly.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import h5py
import numpy as np

from slidemap.data.patchsets.base import PatchSetData, PatchSetDataModule, PatchSplit, prepare_splits, tiles_patch
from slidemap.data.patchsets.l4s_release import PATCH, STORED, STORED_CANONICAL, STORED_SCALE
from slidemap.data.sites.channels import bands_needed, canonical_all, is_pre
from slidemap.data.sites.indices import ndvi
from slidemap.data.sites.reflectance import L2A_DN_SCALE, to_reflectance
from slidemap.data.sites.site import DEFAULT_CHANNELS
from slidemap.errors import InputError

log = logging.getLogger(__name__)

SPLITS = {"train": "TrainData", "val": "ValidData", "test": "TestData"}
AREA = "landslide4sense"


L4SSplit = PatchSplit
"""One split in memory (the shared :class:`~slidemap.data.patchsets.base.PatchSplit`)."""

L4SData = PatchSetData
"""Everything a run needs (the shared :class:`~slidemap.data.patchsets.base.PatchSetData`)."""


def stored_indices(channels: tuple[str, ...], root: Path | None = None) -> tuple[int, ...]:
    """The stored channels the chosen inputs need, in stored order; NDVI needs red (B4) and nir (B8)."""
    try:
        names = canonical_all(channels)
    except ValueError as err:
        raise InputError(root, f"Landslide4Sense: {err}") from None
    pre = [c for c in names if is_pre(c)]
    if pre:
        raise InputError(root, f"Landslide4Sense has no pre-event image: channel(s) {', '.join(pre)} need one; "
                               "use inputs=post")
    needed = {n for c in names for n in (bands_needed(c) or (c,))}
    lacking = sorted(needed - set(STORED_CANONICAL))
    if lacking:
        raise InputError(root, f"Landslide4Sense has no {', '.join(lacking)} channel; it holds "
                               f"{', '.join(STORED_CANONICAL)}")
    return tuple(sorted(STORED_CANONICAL.index(n) for n in needed))


def derive(raw: np.ndarray, stored: tuple[int, ...], channels: tuple[str, ...]) -> np.ndarray:
    """The chosen channels (C, H, W) from the read stored channels, with NDVI as ``Site.channel`` computes it."""
    def band(name: str) -> np.ndarray:
        return raw[stored.index(STORED_CANONICAL.index(name))]

    return np.stack([ndvi(band("red"), band("nir")) if name == "ndvi" else band(name)
                     for name in canonical_all(channels)]).astype(np.float32, copy=False)


def to_physical(raw: np.ndarray, stored: tuple[int, ...], valid: np.ndarray) -> np.ndarray:
    """Stored channels ``stored`` (k, H, W) in the site contract's units, float32, 0 where ``valid`` is False.

    Each is multiplied by its :data:`STORED_SCALE`; the bands, now digital numbers, go through the site reader's
    DN -> reflectance conversion (:func:`~slidemap.data.sites.reflectance.to_reflectance`, x 1e-4).
    """
    scale = np.asarray([STORED_SCALE[i] for i in stored])[:, None, None]
    out = (raw * scale).astype(np.float32)
    bands = [k for k, i in enumerate(stored) if STORED[i].startswith("B")]
    if bands:
        out[bands] = to_reflectance(out[bands], valid, scale=L2A_DN_SCALE)
    out[:, ~valid] = 0.0
    return out


def _number(path: Path) -> tuple[int, str]:
    """Sort key: image_2 before image_10, as the official lists number them."""
    m = re.search(r"(\d+)$", path.stem)
    return (int(m.group(1)) if m else -1, path.name)


def list_pairs(root: Path, split: str, labelled: bool = True) -> list[tuple[Path, Path | None]]:
    """``(image, mask)`` paths of one split folder, numerically sorted; refuses missing folders and masks."""
    folder = root / split
    if not folder.is_dir():
        raise InputError(folder, f"missing split folder: Landslide4Sense needs {', '.join(SPLITS.values())} "
                                 f"under {root}")
    img_dir, mask_dir = folder / "img", folder / "mask"
    if not img_dir.is_dir():
        raise InputError(img_dir, "missing: images are expected as img/image_N.h5")
    images = sorted(img_dir.glob("*.h5"), key=_number)
    if not images:
        raise InputError(img_dir, f"empty split: no .h5 images in {split}/img")
    if not labelled:
        return [(p, None) for p in images]
    if not mask_dir.is_dir():
        raise InputError(mask_dir, f"missing: {split} needs labels (mask/mask_N.h5) to be used for validation or "
                                   "scoring; the first public release labels only TrainData")
    pairs = []
    for image in images:
        mask = mask_dir / image.name.replace("image", "mask", 1)
        if not mask.is_file():
            raise InputError(image, f"has no mask: expected {mask}")
        pairs.append((image, mask))
    return pairs


def _dataset(path: Path, f: h5py.File, key: str, shape: tuple[int, ...]) -> h5py.Dataset:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise InputError(path, f"no dataset '{key}' in this HDF5 file; keys found: {sorted(f.keys()) or 'none'}")
    ds = f[key]
    if ds.shape != shape:
        raise InputError(path, f"'{key}' has shape {ds.shape} ({ds.ndim}-d); expected {shape}")
    return ds


def read_image(path: Path, stored: tuple[int, ...]) -> np.ndarray:
    """The stored channels ``stored`` of one image as float32 (k, 128, 128); only those are kept.

    The whole 1.8 MB patch is read and then sliced: channel-last data on disk makes an h5py selection of a few
    channels a strided read, measured 2.6x slower (2.2 vs 0.8 ms a patch); memory stays one patch either way.
    """
    try:
        with h5py.File(path, "r") as f:
            raw = _dataset(path, f, "img", (PATCH, PATCH, len(STORED)))[()]
    except OSError as err:
        raise InputError(path, f"cannot read HDF5 image: {err}") from err
    return np.moveaxis(raw[:, :, list(stored)], -1, 0).astype(np.float32)


def read_mask(path: Path) -> np.ndarray:
    """One 0/1 mask as uint8 (128, 128); other values are refused (a 0/255 mask would score as garbage)."""
    try:
        with h5py.File(path, "r") as f:
            mask = _dataset(path, f, "mask", (PATCH, PATCH))[()]
    except OSError as err:
        raise InputError(path, f"cannot read HDF5 mask: {err}") from err
    if not np.isin(mask, (0, 1)).all():
        raise InputError(path, f"mask values must be 0 or 1; found {np.unique(mask)[:10].tolist()}")
    return mask.astype(np.uint8)


def read_split(root: Path, split: str, channels: tuple[str, ...]) -> L4SSplit:
    """Read one split's chosen channels, in physical units, into one preallocated array; NaN pixels are invalid.

    A pixel is invalid where any stored channel the inputs need is not finite; its inputs are set to 0.
    """
    stored = stored_indices(channels, root)
    pairs = list_pairs(root, split)
    n = len(pairs)
    x = np.empty((n, len(channels), PATCH, PATCH), np.float32)
    y = np.empty((n, PATCH, PATCH), np.uint8)
    valid = np.empty((n, PATCH, PATCH), bool)
    for i, (image, mask) in enumerate(pairs):
        raw = read_image(image, stored)
        valid[i] = np.isfinite(raw).all(axis=0)
        x[i] = derive(to_physical(raw, stored, valid[i]), stored, channels)  # NDVI of 0 / 0 is 0 too
        y[i] = read_mask(mask)
    names = tuple(p.stem for p, _ in pairs)
    pixels = valid.size
    log.info("%s: %d patches, %.2f M pixels, channels %s; NaN/non-finite share %.3f%%", split, n, pixels / 1e6,
             ",".join(channels), 100.0 * (pixels - int(valid.sum())) / max(pixels, 1))
    return L4SSplit(x, y, valid, names)


def prepare(root: Path, window: int, channels: tuple[str, ...] = DEFAULT_CHANNELS) -> PatchSetData:
    """Read the three splits, normalise with TrainData statistics and cut every split into windows."""
    if not tiles_patch(window, (PATCH, PATCH)):
        raise InputError("window", f"window {window} px does not tile the {PATCH} px Landslide4Sense patches; "
                                   "use 32, 64 or 128")
    stored_indices(channels, root)  # an unknown channel fails before any file is read
    splits = {role: read_split(root, folder, channels) for role, folder in SPLITS.items()}
    return prepare_splits(splits, window, channels, what="TrainData")


class Landslide4SenseDataModule(PatchSetDataModule):
    """Serves the Landslide4Sense benchmark with the interface of ``SiteDataModule`` (see ``training.run``).

    Args:
        root: Folder holding TrainData, ValidData and TestData.
        train_sites: The scenario's training sites; must be None (scenario ``all``): the benchmark has no regions.
        window: Tile size (32, 64 or 128 px) cut from each 128 px patch.
        channels: Input channel names (:mod:`slidemap.data.sites.channels`; default: the paper's).
        Other arguments as in ``SiteDataModule``.
    """

    def __init__(self, root: str, train_sites: list[str] | None = None, window: int = 64,
                 channels: list[str] | tuple[str, ...] = DEFAULT_CHANNELS, batch_size: int = 4,
                 eval_batch_size: int = 16, num_workers: int = 0, seed: int = 0,
                 min_samples_per_epoch: int = 0, augment: dict | None = None,
                 windows: list[int] | None = None) -> None:
        super().__init__(root, train_sites, window, channels, batch_size, eval_batch_size, num_workers, seed,
                         min_samples_per_epoch, augment, windows)

    @property
    def area(self) -> str:
        """One test area: the whole TestData split."""
        return AREA

    def read_data(self) -> PatchSetData:
        """Check the settings, then read the three splits in physical units."""
        if self.train_sites is not None:
            raise InputError(self.root, f"Landslide4Sense is one ready train/valid/test split without regions: only "
                                        f"scenario=all applies (this scenario trains on {self.train_sites})")
        if not self.root.is_dir():
            raise InputError(self.root, "Landslide4Sense root not found (expected TrainData, ValidData, TestData)")
        return prepare(self.root, self.window, self.channels)
