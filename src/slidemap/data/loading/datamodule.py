"""LightningDataModule for one scenario: which sites train, every site's test area tested, all in memory."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from slidemap.config_checks import check_count
from slidemap.data.loading.augment import Augmentation, augment_batch, generator_for
from slidemap.data.loading.loaders import eval_loader, train_loader
from slidemap.data.sites.channels import canonical_all
from slidemap.data.sites.reader import read_sites
from slidemap.data.sites.site import DEFAULT_CHANNELS, Site
from slidemap.data.sites.units import REFLECTANCE, Distribution, sample_distribution, units_of
from slidemap.data.tiling.offsets import EpochSampler, OffsetWindows, TrainArea
from slidemap.data.tiling.patches import Normaliser, Patches, cut_patches, fit_normaliser
from slidemap.data.tiling.split import WINDOWS, Block, SiteSplit, split_sites
from slidemap.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """Everything a scenario needs, built by pure functions (testable without Lightning)."""

    sites: dict[str, Site]
    splits: dict[str, SiteSplit]
    normaliser: Normaliser
    train: Patches
    val: Patches
    test: dict[str, Patches]
    train_areas: list[TrainArea]
    distribution: Distribution | None = None
    optical_unit: str = REFLECTANCE


def check_window(sites: dict[str, Site], splits: dict[str, SiteSplit], window: int) -> None:
    """Refuse a window that does not fit in a test area: the grid would be one padded patch of mostly nothing."""
    for name, split in splits.items():
        t = split.test
        if window > t.rows or window > t.cols:
            raise InputError(sites[name].meta.get("path", name),
                             f"window {window} px is larger than the test area of site '{name}' "
                             f"({t.rows} x {t.cols} px); use a smaller window or a larger site")


def fit_distribution(areas: list[tuple[Site, Block]], channels: tuple[str, ...]) -> Distribution:
    """The per-channel distribution of the training areas' valid pixels (checkpoint's units guard)."""
    distribution = sample_distribution(channels, ((
        (site.channel(name)[block.slices] for name in channels), site.valid[block.slices]) for site, block in areas))
    if distribution is None:
        raise ValueError("no valid pixels in the training areas")
    return distribution


def prepare(sites: dict[str, Site], train_sites: list[str], window: int,
            channels: tuple[str, ...] = DEFAULT_CHANNELS) -> PreparedData:
    """Split, normalise (training areas of ``train_sites`` only) and cut every area into grid patches."""
    unknown = [s for s in train_sites if s not in sites]
    if unknown:
        raise InputError(None, f"unknown training site(s) {unknown}; known sites: {', '.join(sorted(sites))}")
    for site in sites.values():
        site.check_channels(channels)
    optical_unit = common_optical_unit(sites)
    splits = split_sites(sites)
    check_window(sites, splits, window)
    train_blocks = [(sites[s], splits[s].train) for s in train_sites]
    normaliser = fit_normaliser(train_blocks, tuple(channels))
    distribution = fit_distribution(train_blocks, tuple(channels))
    train, val, test, areas = [], [], {}, []
    for name, site in sites.items():
        stack = normaliser(site.stack(tuple(channels)), site.valid)
        label = site.label if site.label is not None else np.zeros(site.shape, np.uint8)
        if name in train_sites:
            block = splits[name].train
            train.append(cut_patches(stack, label, site.valid, block, window))
            val.append(cut_patches(stack, label, site.valid, splits[name].val, window))
            rows, cols = block.slices  # copies: the training block alone, nothing of validation or test
            areas.append(TrainArea(stack[:, rows, cols].copy(), label[rows, cols].copy(),
                                   site.valid[rows, cols].copy()))
        test[name] = cut_patches(stack, label, site.valid, splits[name].test, window)
    return PreparedData(sites, splits, normaliser, Patches.concat(train), Patches.concat(val), test, areas,
                        distribution, optical_unit)


def common_optical_unit(sites: dict[str, Site]) -> str:
    """The one unit of every site's bands; sites in reflectance and in brightness cannot train one model."""
    units = {name: site.optical_unit for name, site in sites.items()}
    if len(set(units.values())) > 1:
        listed = ", ".join(f"{name} {unit}" for name, unit in units.items())
        raise InputError(None, f"the sites' bands are in different units ({listed}; site.yaml 'units'): one model "
                               "takes one unit, so use sites of one kind (data.sites=[...])")
    return next(iter(units.values()), REFLECTANCE)


class PatchDataModule(pl.LightningDataModule):
    """Lightning's four loaders over in-memory patches, shared by every data source.

    The settings every source shares are kept here; a subclass sets ``data`` (with ``train`` and ``val``
    patches) in ``setup`` and says which patch sets are its test areas.

    Args:
        root: Where the data lies (a folder of sites, or a benchmark's folder).
        train_sites: The scenario's training sites; None = all (scenario ``all``).
        window: Patch size in pixels.
        channels: Input channel names (the inputs group; the paper's B2, B3, B4, B8, slope by default).
        batch_size: Training batch size (the paper: 4).
        eval_batch_size: Batch size for validation, test and prediction.
        num_workers: DataLoader worker processes.
        seed: Seed of the training shuffle.
        min_samples_per_epoch: A training set smaller than this is cycled (reshuffled each pass) so an epoch
            still makes a few optimiser steps: with 128 px windows a small site holds only a handful of
            patches, and early stopping per epoch would otherwise end training after a dozen updates.
        augment: The ``augment`` group (:class:`~slidemap.data.loading.augment.Augmentation`); None = the paper's none.
        windows: The windows the data config declares (``data.windows``); None = the source's own
            (:attr:`windows`).
    """

    def __init__(self, root: str, train_sites: list[str] | None, window: int,
                 channels: list[str] | tuple[str, ...], batch_size: int, eval_batch_size: int, num_workers: int,
                 seed: int, min_samples_per_epoch: int, augment: dict | None = None,
                 windows: list[int] | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.train_sites = list(train_sites) if train_sites is not None else None
        self.window = int(window)
        try:
            self.channels = canonical_all(channels)
        except ValueError as err:
            raise InputError(None, f"inputs: {err}") from None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.min_samples_per_epoch = int(min_samples_per_epoch)
        self.augment = Augmentation.from_config(augment)
        self.declared_windows = tuple(check_count("data.windows", w) for w in windows) if windows else None
        self.data: Any = None

    @property
    def in_channels(self) -> int:
        return len(self.channels)

    def test_patch_sets(self) -> list[Patches]:
        """One patch set per test area, in ``test_areas`` order."""
        raise NotImplementedError

    @property
    def validation_blocks(self) -> dict[str, dict[str, Any]]:
        """What each validation block holds (sources with their own validation split: nothing to say)."""
        return {}

    @property
    def windows(self) -> tuple[int, ...]:
        """The windows this source accepts (the training run refuses others): ``data.windows`` when the config
        declares them (e.g. [256] for 0.5 m imagery), else the paper's (a patch dataset: its dataset.yaml's)."""
        return self.declared_windows or WINDOWS

    @property
    def split(self) -> dict[str, Any] | None:
        """How the source's train/val/test split was made, where metrics.json should state it; None = nothing
        beyond ``validation_blocks``."""
        return None

    def train_areas(self) -> list[TrainArea] | None:
        """The training areas whole, for windows at random offsets; None where the source has none."""
        return getattr(self.data, "train_areas", None)

    def train_dataloader(self) -> DataLoader:
        assert self.data is not None
        if not self.augment.offsets:
            return train_loader(self.data.train, self.batch_size, self.seed, self.min_samples_per_epoch,
                                self.num_workers)
        areas = self.train_areas()
        if not areas:
            raise InputError(self.root, f"augment={self.augment.name} draws windows at random offsets inside "
                                        "training areas, which this data source does not provide; use augment=d4")
        per_epoch = max(len(self.data.train), self.min_samples_per_epoch)  # the grid's pixels per epoch
        return DataLoader(OffsetWindows(areas, self.window, per_epoch, self.seed), batch_size=self.batch_size,
                          sampler=EpochSampler(per_epoch, self.seed), num_workers=self.num_workers)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Flips and jitter of training batches, on the device they train on; other batches pass unchanged."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or not trainer.training or not self.augment.on_batches:
            return batch
        norm = self.data.normaliser
        return augment_batch(batch, self.augment, self.channels, norm.mean, norm.std,
                             generator_for(self.seed, trainer.global_step))

    def val_dataloader(self) -> DataLoader:
        assert self.data is not None
        return eval_loader(self.data.val, self.eval_batch_size, self.num_workers)

    def test_dataloader(self) -> list[DataLoader]:
        return [eval_loader(p, self.eval_batch_size, self.num_workers) for p in self.test_patch_sets()]

    def predict_dataloader(self) -> list[DataLoader]:
        """Every test area in order, unsharded: maps and previews are made by one process (rank 0 under DDP)."""
        return [eval_loader(p, self.eval_batch_size, self.num_workers, shard=False) for p in self.test_patch_sets()]


class SiteDataModule(PatchDataModule):
    """Serves grid patches of a folder of sites for one scenario.

    Args:
        root: Folder of site folders (the site contract, docs/data.md).
        train_sites: Sites whose training areas train the model; None = all sites (scenario ``all``).
        sites: Sites to read (and test); None = every site under ``root``.
        synthetic: If given ({seed, scale}), the built-in synthetic sites are generated into ``root`` first.
        Other arguments as in :class:`PatchDataModule`.
    """

    def __init__(self, root: str, train_sites: list[str] | None = None, sites: list[str] | None = None,
                 window: int = 64, channels: list[str] | tuple[str, ...] = DEFAULT_CHANNELS, batch_size: int = 4,
                 eval_batch_size: int = 16, num_workers: int = 0, seed: int = 0,
                 synthetic: dict | None = None, min_samples_per_epoch: int = 0, augment: dict | None = None,
                 windows: list[int] | None = None) -> None:
        super().__init__(root, train_sites, window, channels, batch_size, eval_batch_size, num_workers, seed,
                         min_samples_per_epoch, augment, windows)
        self.site_names = list(sites) if sites is not None else None
        self.synthetic = dict(synthetic) if synthetic else None

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            from slidemap.data.synthetic import ensure_synthetic

            ensure_synthetic(self.root, scale=float(self.synthetic["scale"]), seed=int(self.synthetic["seed"]))

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        self.prepare_data()
        start = time.perf_counter()
        sites = read_sites(self.root, self.site_names)
        train_sites = self.train_sites if self.train_sites is not None else list(sites)
        self.data = prepare(sites, train_sites, self.window, self.channels)
        log.info("data ready in %.1f s: %d train, %d val patches; test areas %s", time.perf_counter() - start,
                 len(self.data.train), len(self.data.val), {k: len(v) for k, v in self.data.test.items()})

    @property
    def test_areas(self) -> list[str]:
        """Names of the test dataloaders, in order (one per site)."""
        assert self.data is not None, "call setup() first"
        return list(self.data.test)

    @property
    def train_site_names(self) -> list[str]:
        """The sites whose training areas train the model (all of them for scenario ``all``)."""
        assert self.data is not None, "call setup() first"
        return list(self.train_sites if self.train_sites is not None else self.data.sites)

    def checkpoint_info(self) -> dict[str, Any]:
        """What a checkpoint must carry to map new data later: channels, their units and training distribution,
        window, normaliser, training sites."""
        assert self.data is not None, "call setup() first"
        return {"channels": list(self.channels), "window": self.window,
                "normaliser": self.data.normaliser.to_dict(), "train_sites": self.train_site_names,
                "units": list(units_of(self.channels, self.data.optical_unit)),
                "distribution": self.data.distribution.to_dict()}

    @property
    def validation_blocks(self) -> dict[str, dict[str, Any]]:
        """Per training site, what its validation block holds and whether it grew (metrics.json records it)."""
        assert self.data is not None, "call setup() first"
        return {name: self.data.splits[name].validation for name in self.train_site_names}

    def test_patch_sets(self) -> list[Patches]:
        """One patch set per test area, in ``test_areas`` order."""
        assert self.data is not None
        return list(self.data.test.values())
