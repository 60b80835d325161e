"""``data=patches``: a folder of image/mask patch pairs served as one patch-set DataModule, trained and scored like
Landslide4Sense.

``DIR/{train,val,test}/{images,masks}/`` with ``DIR/dataset.yaml`` (:mod:`slidemap.data.patchsets.files`; other
folder names and pairings by its keys, :mod:`slidemap.data.patchsets.layout`). The whole structure is checked first
(:mod:`slidemap.data.patchsets.check`). A split that is missing is drawn from ``train/`` by patch: with only ``train/``, a seeded 3:1:1 train/val/test split (seed
``data.seed``, or ``data.split_seed`` to hold the split while a sweep varies the seed), the same for the same seed
and files, recorded under ``split`` in metrics.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from slidemap.data.patchsets.base import ROLES, PatchSetData, PatchSetDataModule, PatchSplit, prepare_splits, tiles_patch
from slidemap.data.patchsets.check import Scan, check_dataset
from slidemap.data.patchsets.files import PatchSpec, load_spec, read_mask, read_raw, to_inputs
from slidemap.data.patchsets.masks import Labels
from slidemap.data.patchsets.stream import PairReader, StreamedMasks, StreamedPatches, sample_indices, sample_pieces, \
    should_stream
from slidemap.data.sites.site import DEFAULT_CHANNELS
from slidemap.data.sites.units import sample_distribution
from slidemap.data.tiling.patches import fit_statistics
from slidemap.data.tiling.split import WINDOWS
from slidemap.errors import InputError

log = logging.getLogger(__name__)

SHARES: dict[str, int] = {"train": 3, "val": 1, "test": 1}
"""Patches of train/ per role when a split is drawn from it: 3:1:1 (the paper's 3:2 train:test, a fifth of it
validating), restricted to the roles that are missing (train/ and test/ only: 3:1 train:val)."""


def draw_split(count: int, missing: tuple[str, ...], seed: int, source: Path) -> dict[str, list[int]]:
    """Which of ``count`` train/ patches (in file order) go to train and to each missing role.

    A seeded permutation: each missing role takes its share (at least one patch), train keeps the rest; every
    role's patches stay in file order.
    """
    roles = ("train", *missing)
    total = sum(SHARES[r] for r in roles)
    sizes = {r: max(1, round(count * SHARES[r] / total)) for r in missing}
    if count - sum(sizes.values()) < 1:
        raise InputError(source, f"{count} patch(es): too few to draw {' and '.join(missing)} from train/ "
                                 f"({':'.join(str(SHARES[r]) for r in roles)} by patch); add patches or the folders")
    order = np.random.default_rng(seed).permutation(count)
    drawn, start = {}, 0
    for role in missing:
        drawn[role] = sorted(order[start:start + sizes[role]].tolist())
        start += sizes[role]
    drawn["train"] = sorted(order[start:].tolist())
    return drawn


def plan_splits(root: Path, pairs: dict[str, list[tuple[Path, Path]]],
                seed: int) -> tuple[dict[str, list[tuple[Path, Path]]], dict[str, Any]]:
    """The (image, mask) pairs of each role (the present split folders', the missing roles drawn from train) and the
    record metrics.json shows of where they came from."""
    present = {r: pairs[r] for r in ROLES if r in pairs}
    missing = tuple(r for r in ROLES if r not in present)
    record: dict[str, Any] = {"drawn_from_train": list(missing)}
    if missing:
        train = present["train"]
        drawn = draw_split(len(train), missing, seed, train[0][0].parent.parent if train else root)
        present.update({r: [train[i] for i in drawn[r]] for r in drawn})
        record.update({"ratio": ":".join(str(SHARES[r]) for r in ("train", *missing)), "seed": seed,
                       **{r: [image.stem for image, _ in present[r]] for r in missing}})
    record["patches"] = {r: len(present[r]) for r in ROLES}
    return {r: present[r] for r in ROLES}, record


def pair_reader(spec: PatchSpec, inputs: tuple[str, ...], shape: tuple[int, int]) -> PairReader:
    """Reads one (image, mask) pair: inputs in physical units, 0/1 mask, scored pixels, valid inputs; every patch
    must be ``shape``."""
    def read(image: Path, mask: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        raw, raw_valid = read_raw(image, spec)
        if raw.shape[1:] != shape:
            raise InputError(image, f"is {raw.shape[1]} x {raw.shape[2]} px; the dataset's patches are "
                                    f"{shape[0]} x {shape[1]} px (the first training image's)")
        x, seen = to_inputs(image, raw, raw_valid, spec, inputs)
        y, labelled = read_mask(mask, shape, spec.labels, spec.h5.masks)
        return x, y, seen & labelled, seen  # unlabelled pixels: no loss, no score, but their inputs stay as context
    return read


def read_patches(pairs: list[tuple[Path, Path]], read: PairReader, channels: int,
                 shape: tuple[int, int]) -> PatchSplit:
    """One role's patches in physical units, into one preallocated array."""
    n = len(pairs)
    x = np.empty((n, channels, *shape), np.float32)
    y = np.empty((n, *shape), np.uint8)
    valid = np.empty((n, *shape), bool)
    seen = np.empty((n, *shape), bool)
    for i, (image, mask) in enumerate(pairs):
        x[i], y[i], valid[i], seen[i] = read(image, mask)
    return PatchSplit(x, y, valid, tuple(image.stem for image, _ in pairs), seen)


def checked(root: Path, spec: PatchSpec) -> Scan:
    """The dataset's structure checked as a whole before any pixel is read: the first problem stops the run (``slidemap
    dataset`` lists them all)."""
    start = time.perf_counter()
    found = check_dataset(root, spec)
    if found.problems:
        more = f" (and {len(found.problems) - 1} more problem(s): slidemap dataset {root})" \
            if len(found.problems) > 1 else ""
        err = found.problems[0]
        raise InputError(err.path, err.problem + more)
    log.info("%s: structure checked in %.1f s (%d pairs)", root, time.perf_counter() - start,
             sum(len(p) for p in found.pairs.values()))
    return found


def prepare(root: Path, spec: PatchSpec, window: int, inputs: tuple[str, ...], seed: int,
            stream: bool | str = False, sample: int = 0) -> tuple[PatchSetData, dict[str, Any]]:
    """Check the structure, plan and read the splits, normalise with the train split's statistics, cut windows; and
    the split record."""
    spec.check_inputs(inputs)  # a channel the dataset lacks fails before any file is read
    found = checked(root, spec)
    plan, record = plan_splits(root, found.pairs, seed)
    shape = found.shape()
    assert shape is not None, "check_dataset refuses a dataset without a readable train pair"
    if not tiles_patch(window, shape):
        raise InputError("window", f"window {window} px does not tile the {shape[0]} x {shape[1]} px patches of "
                                   f"{root}; use a window that divides the patch size")
    read = pair_reader(spec, inputs, shape)
    if should_stream(stream, sum(len(p) for p in plan.values()), len(inputs), shape):
        return stream_splits(plan, read, found, spec, window, inputs, seed, sample, root), record
    splits = {r: read_patches(plan[r], read, len(inputs), shape) for r in ROLES}
    for role, split in splits.items():
        pixels = split.valid.size
        log.info("%s: %d patches of %d x %d px, invalid share %.3f%%", role, len(split), *shape,
                 100.0 * (pixels - int(split.valid.sum())) / max(pixels, 1))
        if not split.valid.any():
            raise InputError(root / spec.layout.splits.get(role, spec.layout.splits["train"]),
                             f"the {role} split has no valid labelled pixel ({len(split)} patch(es): images all "
                             f"no-data/NaN or masks all unlabelled): nothing to {'score' if role == 'test' else 'fit'}")
    return prepare_splits(splits, window, inputs, spec.units, f"{root}/train", spec.per_patch), record


def labelled_somewhere(found: Scan, pairs: list[tuple[Path, Path]], labels: Labels) -> bool:
    """Whether any mask of ``pairs`` holds a landslide or background code, from the structure check's histograms
    (codes compared as the scan read them: as colours only when both the scan and ``labels`` use colours)."""
    if found.colours != labels.colours:
        return True  # the codes are not comparable here; an all-unlabelled split then scores as undefined
    codes = set(labels.landslide + labels.background)
    return any(codes.intersection(found.masks.get(mask, {})) for _, mask in pairs)


def stream_splits(plan: dict[str, list[tuple[Path, Path]]], read: PairReader, found: Scan, spec: PatchSpec,
                  window: int, inputs: tuple[str, ...], seed: int, sample: int, root: Path) -> PatchSetData:
    """Every split served from its files (:mod:`slidemap.data.patchsets.stream`), the normaliser and distribution fitted
    on ``sample`` train patches drawn by ``seed`` (0: every train patch, one read more before the first step)."""
    shape = found.shape()
    assert shape is not None
    sets = {r: StreamedPatches(plan[r], read, shape, window, spec.per_patch) for r in ROLES}
    for role, patches in sets.items():
        patches.labelled = labelled_somewhere(found, plan[role], spec.labels)
        if not patches.labelled:
            raise InputError(root / spec.layout.splits.get(role, spec.layout.splits["train"]),
                             f"the {role} split has no labelled pixel ({len(plan[role])} patch(es), masks all "
                             f"unlabelled): nothing to {'score' if role == 'test' else 'fit'}")
    train = plan["train"]
    chosen = sample_indices(len(train), sample, seed)
    start = time.perf_counter()
    distribution = sample_distribution(inputs, sample_pieces(train, read, chosen, per_patch=False))
    normaliser = fit_statistics(inputs, sample_pieces(train, read, chosen, spec.per_patch))
    if normaliser is None or distribution is None:
        raise InputError(root / spec.layout.splits["train"], f"the {len(chosen)} sampled train patch(es) have no "
                                                             "valid (finite) pixel: raise data.stream_sample (0: all)")
    for patches in sets.values():
        patches.normaliser = normaliser
    log.info("streaming %s: normaliser fitted on %d of %d train patches in %.1f s; %s windows of %d px", root,
             len(chosen), len(train), time.perf_counter() - start,
             ", ".join(f"{len(sets[r])} {r}" for r in ROLES), window)
    names = tuple(image.stem for image, _ in plan["test"])
    return PatchSetData(normaliser, sets["train"], sets["val"], sets["test"], StreamedMasks(sets["test"], names),
                        distribution, spec.units, spec.per_patch,
                        {"patches": len(chosen), "of": len(train), "seed": seed})


class PatchFolderDataModule(PatchSetDataModule):
    """Serves a patch folder (``data=patches data.root=DIR``) with the interface of ``SiteDataModule``.

    Args:
        root: Folder holding dataset.yaml and train/ (val/, test/ optional).
        train_sites: Must be None (scenario ``all``): a patch dataset has no regions.
        window: Tile size cut from each patch; must divide the patch size and be one the dataset accepts
            (dataset.yaml ``windows``, default the paper's 32, 64, 128).
        channels: Input channel names: the dataset's channels, slope from its dem, NDVI from its red and nir;
            None = every channel dataset.yaml lists, in file order (``experiment=real_patches``).
        seed: Seed of the training shuffle, of a split drawn from train/ and of the streamed normaliser's sample.
        split_seed: Seed of a split drawn from train/ when it should not follow ``seed`` (None: ``seed``).
        stream: Read tiles from their files per batch (true), hold every split in memory (false), or ``auto``:
            stream when the inputs would take more than 2 GiB (:mod:`slidemap.data.patchsets.stream`).
        stream_sample: Train patches the streamed normaliser is fitted on (0: all of them).
        Other arguments as in ``SiteDataModule``.
    """

    def __init__(self, root: str, train_sites: list[str] | None = None, window: int = 64,
                 channels: list[str] | tuple[str, ...] | None = DEFAULT_CHANNELS, batch_size: int = 4,
                 eval_batch_size: int = 16, num_workers: int = 0, seed: int = 0,
                 min_samples_per_epoch: int = 0, augment: dict | None = None, split_seed: int | None = None,
                 stream: bool | str = "auto", stream_sample: int = 512) -> None:
        self._spec: PatchSpec | None = None
        if channels is None:  # the dataset's own channels: its dataset.yaml is read now
            self.root = Path(root)
            channels = self.spec.channels
        super().__init__(root, train_sites, window, channels, batch_size, eval_batch_size, num_workers, seed,
                         min_samples_per_epoch, augment)
        self.split_seed = int(seed if split_seed is None else split_seed)
        if stream not in (True, False, "auto"):
            raise InputError("data.stream", f"must be true, false or auto, got {stream!r}")
        if isinstance(stream_sample, bool) or not isinstance(stream_sample, int) or stream_sample < 0:
            raise InputError("data.stream_sample", f"must be a whole number of patches >= 0 (0: all), "
                                                   f"got {stream_sample!r}")
        self.stream, self.stream_sample = stream, stream_sample
        self._split: dict[str, Any] | None = None

    @property
    def spec(self) -> PatchSpec:
        """dataset.yaml, read once."""
        if self._spec is None:
            if not self.root.is_dir():
                raise InputError(self.root, "patch dataset root not found (expected dataset.yaml and train/)")
            self._spec = load_spec(self.root)
        return self._spec

    @property
    def windows(self) -> tuple[int, ...]:
        """The windows this dataset accepts: ``data.windows``, else dataset.yaml's ``windows``, else the paper's."""
        return self.declared_windows or self.spec.windows or WINDOWS

    @property
    def area(self) -> str:
        """The test area's name: dataset.yaml's ``name``, else the folder's."""
        return self.spec.name

    @property
    def split(self) -> dict[str, Any] | None:
        """Where each split came from (metrics.json): drawn roles with ratio, seed and patch names; counts."""
        return self._split

    def read_data(self) -> PatchSetData:
        """Check the settings, then read the splits in physical units."""
        if self.train_sites is not None:
            raise InputError(self.root, f"a patch dataset is one train/val/test split without regions: only "
                                        f"scenario=all applies (this scenario trains on {self.train_sites})")
        if self.window not in self.windows:
            raise InputError("window", f"window {self.window} px is not one {self.spec.path} accepts "
                                       f"({', '.join(map(str, self.windows))}; its 'windows' key)")
        data, self._split = prepare(self.root, self.spec, self.window, self.channels, self.split_seed, self.stream,
                                    self.stream_sample)
        return data
