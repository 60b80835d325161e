"""The paper's split of a site into contiguous train / validation / test blocks, and its regular patch grid."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slidemap.errors import InputError

if TYPE_CHECKING:
    from slidemap.data.site import Site

WINDOWS: tuple[int, ...] = (32, 64, 128)
"""The paper's patch sizes."""


@dataclass(frozen=True)
class Block:
    """A rectangle of the site grid: rows [row0, row0+rows), cols [col0, col0+cols)."""

    row0: int
    col0: int
    rows: int
    cols: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row0, self.row0 + self.rows), slice(self.col0, self.col0 + self.cols)

    def grid(self, window: int) -> list[tuple[int, int]]:
        """Top-left corners of the regular non-overlapping window grid anchored at the block's corner.

        The grid covers the whole block: the last row/column of windows may run past the block's edge; those
        pixels are padded as nodata by the patch cutter, so every pixel of an area is used exactly once and no
        pixel of a neighbouring block leaks in.
        """
        return [
            (self.row0 + r, self.col0 + c)
            for r in range(0, self.rows, window)
            for c in range(0, self.cols, window)
        ]

    def count(self, window: int) -> int:
        return math.ceil(self.rows / window) * math.ceil(self.cols / window)


@dataclass(frozen=True)
class SiteSplit:
    """Train (without validation), validation and test blocks of one site."""

    train: Block
    val: Block
    test: Block
    axis: str  # "rows" or "cols": the axis cut into blocks

    def blocks(self) -> dict[str, Block]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass(frozen=True)
class SplitConfig:
    """How to cut a site. Defaults follow the paper: 3:2 train:test, 10% of training held out for validation."""

    axis: str = "auto"  # auto (the longer axis) | rows | cols
    test_fraction: float = 0.4
    val_fraction: float = 0.1
    test_side: str = "end"  # end: test block at the bottom/right; start: at the top/left
    min_val: int = 32  # the validation block is at least one smallest window deep

    @classmethod
    def from_meta(cls, meta: dict[str, Any], source: str = "site.yaml") -> "SplitConfig":
        """Read the optional ``split`` mapping of a site's ``site.yaml``."""
        raw = meta.get("split") or {}
        if not isinstance(raw, dict):
            raise InputError(source, f"'split' must be a mapping, got {raw!r}")
        unknown = set(raw) - {"axis", "test_fraction", "val_fraction", "test_side", "min_val"}
        if unknown:
            raise InputError(source, f"unknown split keys {sorted(unknown)}")
        for key in ("test_fraction", "val_fraction"):
            if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], (int, float))):
                raise InputError(source, f"split {key} must be a number, got {raw[key]!r}")
        if "min_val" in raw and (isinstance(raw["min_val"], bool) or not isinstance(raw["min_val"], int)
                                 or raw["min_val"] < 0):
            raise InputError(source, f"split min_val must be a non-negative integer, got {raw['min_val']!r}")
        for key in ("axis", "test_side"):
            if key in raw and not isinstance(raw[key], str):
                raise InputError(source, f"split {key} must be a string, got {raw[key]!r}")
        cfg = cls(**raw)
        if cfg.axis not in ("auto", "rows", "cols"):
            raise InputError(source, f"split axis must be auto, rows or cols, got {cfg.axis!r}")
        if cfg.test_side not in ("start", "end"):
            raise InputError(source, f"split test_side must be start or end, got {cfg.test_side!r}")
        if not (0 < cfg.test_fraction < 1 and 0 <= cfg.val_fraction < 1):
            raise InputError(source, "split fractions must lie in (0, 1)")
        return cfg


def split_site(shape: tuple[int, int], config: SplitConfig = SplitConfig()) -> SiteSplit:
    """Cut a (rows, cols) grid into three contiguous blocks along one axis.

    The validation block sits at the far edge of the training area, away from the test block, so that
    validation pixels are as independent of the test pixels as the layout allows.
    """
    rows, cols = shape
    axis = config.axis if config.axis != "auto" else ("cols" if cols >= rows else "rows")
    length = cols if axis == "cols" else rows
    n_test = int(round(length * config.test_fraction))
    n_trainval = length - n_test
    n_val = 0 if config.val_fraction == 0 else max(int(round(n_trainval * config.val_fraction)), config.min_val)
    n_val = min(n_val, n_trainval // 2)
    n_train = n_trainval - n_val
    if config.test_side == "end":
        starts = {"val": 0, "train": n_val, "test": n_trainval}
    else:
        starts = {"test": 0, "train": n_test, "val": n_test + n_train}
    lengths = {"train": n_train, "val": n_val, "test": n_test}

    def block(name: str) -> Block:
        if axis == "cols":
            return Block(0, starts[name], rows, lengths[name])
        return Block(starts[name], 0, lengths[name], cols)

    return SiteSplit(train=block("train"), val=block("val"), test=block("test"), axis=axis)


def split_sites(sites: dict[str, Site]) -> dict[str, SiteSplit]:
    """Each site's train/val/test blocks, honouring its ``site.yaml`` split settings."""
    return {name: split_site(site.shape, SplitConfig.from_meta(site.meta, _site_file(site, "site.yaml")))
            for name, site in sites.items()}


def _site_file(site: Site, filename: str) -> str:
    folder = site.meta.get("path")
    return str(Path(folder) / filename) if folder else f"{site.name}/{filename}"
