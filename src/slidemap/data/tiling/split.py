"""The paper's split of a site into contiguous train / validation / test blocks, and its regular patch grid."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slidemap.errors import InputError

if TYPE_CHECKING:
    from slidemap.data.sites.site import Site

log = logging.getLogger(__name__)

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
    validation: dict[str, Any] = field(default_factory=dict, compare=False)
    """What the validation block holds (valid and landslide pixels, its share of the training area's valid pixels)
    and whether it had to grow to hold enough (:func:`check_validation`); empty when no data was given."""

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
    min_val_share: float = 0.5  # ... and holds at least this part of its nominal share of the valid pixels
    min_val_positives: int = 100  # ... and at least this many landslide pixels (when the training area has them)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], source: str = "site.yaml") -> "SplitConfig":
        """Read the optional ``split`` mapping of a site's ``site.yaml``."""
        raw = meta.get("split") or {}
        if not isinstance(raw, dict):
            raise InputError(source, f"'split' must be a mapping, got {raw!r}")
        unknown = set(raw) - {"axis", "test_fraction", "val_fraction", "test_side", "min_val", "min_val_share",
                              "min_val_positives"}
        if unknown:
            raise InputError(source, f"unknown split keys {sorted(unknown)}")
        for key in ("test_fraction", "val_fraction", "min_val_share"):
            if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], (int, float))):
                raise InputError(source, f"split {key} must be a number, got {raw[key]!r}")
        for key in ("min_val", "min_val_positives"):
            if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], int) or raw[key] < 0):
                raise InputError(source, f"split {key} must be a non-negative integer, got {raw[key]!r}")
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
        if not 0 <= cfg.min_val_share <= 1:
            raise InputError(source, f"split min_val_share must lie in [0, 1], got {cfg.min_val_share!r}")
        return cfg


def split_site(shape: tuple[int, int], config: SplitConfig = SplitConfig(), valid: np.ndarray | None = None,
               label: np.ndarray | None = None) -> SiteSplit:
    """Cut a (rows, cols) grid into three contiguous blocks along one axis.

    The validation block sits at the far edge of the training area, away from the test block, so that
    validation pixels are as independent of the test pixels as the layout allows. Given the site's ``valid`` mask
    (and ``label``), the block grows deeper into the training area until it can drive early stopping
    (:func:`check_validation`): a scene clipped to a diagonal valley would otherwise leave it a corner of data.
    """
    rows, cols = shape
    axis = config.axis if config.axis != "auto" else ("cols" if cols >= rows else "rows")
    length = cols if axis == "cols" else rows
    n_test = int(round(length * config.test_fraction))
    n_trainval = length - n_test
    n_val = 0 if config.val_fraction == 0 else max(int(round(n_trainval * config.val_fraction)), config.min_val)
    n_val = min(n_val, n_trainval // 2)
    validation: dict[str, Any] = {}
    if valid is not None and n_val > 0:
        lines = _lines_from_validation_edge(valid, label, axis, config.test_side, n_test, n_trainval)
        n_val, validation = check_validation(*lines, n_val, n_trainval // 2, config)
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

    return SiteSplit(train=block("train"), val=block("val"), test=block("test"), axis=axis, validation=validation)


def _lines_from_validation_edge(valid: np.ndarray, label: np.ndarray | None, axis: str, test_side: str,
                                n_test: int, n_trainval: int) -> tuple[np.ndarray, np.ndarray]:
    """Valid and landslide pixels of each line (column or row) of the training area, from the validation block's
    edge inwards."""
    along = 0 if axis == "cols" else 1  # sum across the other axis
    per_valid = valid.sum(axis=along)
    per_pos = (valid & (label > 0)).sum(axis=along) if label is not None else np.zeros_like(per_valid)
    if test_side == "end":  # validation at the start, training behind it
        return per_valid[:n_trainval], per_pos[:n_trainval]
    return per_valid[n_test:][::-1], per_pos[n_test:][::-1]  # validation at the end, growing backwards


def check_validation(line_valid: np.ndarray, line_pos: np.ndarray, n_val: int, n_max: int,
                     config: SplitConfig) -> tuple[int, dict[str, Any]]:
    """The validation depth (lines from its edge) that holds enough to validate, and what it holds.

    Enough: at least ``min_val_share`` of its nominal share (``val_fraction``) of the training area's valid and
    landslide pixels, the landslide pixels capped at ``min_val_positives`` (some landslides, not a share of a large
    inventory). The block grows line by line up to ``n_max`` (half the training area); when even that is not
    enough it keeps its configured depth (growing would only take training data) and says why.
    """
    cum_valid, cum_pos = np.cumsum(line_valid), np.cumsum(line_pos)
    total_valid, total_pos = int(cum_valid[-1]), int(cum_pos[-1])
    nominal = config.min_val_share * config.val_fraction
    need_valid = nominal * total_valid
    need_pos = min(config.min_val_positives, math.ceil(nominal * total_pos))
    enough = (cum_valid >= need_valid) & (cum_pos >= need_pos)
    enough[:n_val - 1] = False  # never shallower than the configured depth
    first = int(np.argmax(enough)) + 1 if enough[:n_max].any() else None
    depth = n_val if first is None or first <= n_val else first
    short = ""
    if first is None:
        short = (f"holds {int(cum_valid[depth - 1])} valid and {int(cum_pos[depth - 1])} landslide pixels, and even "
                 f"half the training area would not hold {need_valid:.0f} and {need_pos}")
    record = {"lines": depth, "valid_pixels": int(cum_valid[depth - 1]), "landslide_pixels": int(cum_pos[depth - 1]),
              "share_of_valid": round(float(cum_valid[depth - 1]) / max(total_valid, 1), 4),
              "grown_from": n_val if depth != n_val else None, "short": short or None}
    return depth, record


def split_sites(sites: dict[str, Site]) -> dict[str, SiteSplit]:
    """Each site's train/val/test blocks, honouring its ``site.yaml`` split settings; the validation block holds
    enough valid and landslide pixels to drive early stopping (grown when needed, logged)."""
    splits = {}
    for name, site in sites.items():
        split = split_site(site.shape, SplitConfig.from_meta(site.meta, _site_file(site, "site.yaml")),
                           site.valid, site.label)
        v = split.validation
        if v.get("short"):
            log.warning("site %s: the validation block %s; early stopping may follow noise", name, v["short"])
        elif v.get("grown_from"):
            log.info("site %s: validation block grown from %d to %d %s to hold %d valid and %d landslide pixels",
                     name, v["grown_from"], v["lines"], split.axis, v["valid_pixels"], v["landslide_pixels"])
        splits[name] = split
    return splits


def _site_file(site: Site, filename: str) -> str:
    folder = site.meta.get("path")
    return str(Path(folder) / filename) if folder else f"{site.name}/{filename}"
