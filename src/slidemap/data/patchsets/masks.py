"""Mask encodings: which stored values or colours are landslide, background or unlabelled (dataset.yaml ``labels``).

Public releases encode masks as 0/1, 0/255, colours on black (landslide = (200, 128, 0), (255, 0, 255), ...), class
maps with an unlabelled value (ArcGIS "Classified Tiles": 0 unlabelled, 1 and 2 classes) or several landslide
classes. A mask is read into *codes*: its value for one-band masks (and RGB(A) masks whose colour channels are
equal, as 0/255 masks saved as RGBA are), ``r << 16 | g << 8 | b`` for colour masks. :class:`Labels` maps codes to
landslide (1), background (0) and unlabelled (no loss, no score: ``valid`` False); a code in none of them is refused
unless ``unlabelled: other`` (resized masks carry blended edge colours).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from slidemap.data.patchsets.h5 import is_h5, read_h5
from slidemap.data.patchsets.headers import check_png_complete
from slidemap.data.sites.raster import reading
from slidemap.errors import InputError

ROLES = ("landslide", "background", "unlabelled")
OTHER = "other"
"""``unlabelled: other``: every code that is neither landslide nor background is unlabelled."""


def colour_code(rgb: Any) -> int:
    """One integer per colour (r << 16 | g << 8 | b)."""
    r, g, b = (int(v) for v in rgb)
    return (r << 16) | (g << 8) | b


def code_colour(code: int) -> tuple[int, int, int]:
    return (code >> 16) & 255, (code >> 8) & 255, code & 255


@dataclass(frozen=True)
class Labels:
    """The mask encoding. ``colours``: codes are colours (:func:`colour_code`), else stored values."""

    landslide: tuple[int, ...] = (1,)
    background: tuple[int, ...] = (0,)
    unlabelled: tuple[int, ...] = ()
    other_unlabelled: bool = False
    colours: bool = False
    given: bool = False
    """Whether dataset.yaml gave ``labels`` (then each landslide and background code must occur in some mask)."""

    def show(self, code: int) -> str:
        """A code as dataset.yaml writes it."""
        return str(list(code_colour(code))) if self.colours else str(code)

    def read(self, path: Path, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One mask file as (landslide 0/1, labelled pixels); ``key``: its HDF5 dataset (None: the only one)."""
        codes, colours = mask_codes(path, self.colours, key)
        if colours and not self.colours:
            raise InputError(path, "mask is a colour image (its channels differ): give dataset.yaml 'labels' as "
                                   "[r, g, b] colours")
        return self.decode(codes, path)

    def declared(self) -> dict[str, tuple[int, ...]]:
        return {"landslide": self.landslide, "background": self.background, "unlabelled": self.unlabelled}

    def decode(self, codes: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """A 0/1 landslide mask (uint8) and the labelled pixels of one mask's codes; unknown codes refused."""
        landslide = np.isin(codes, self.landslide)
        labelled = landslide | np.isin(codes, self.background)
        if not self.other_unlabelled:
            unknown = ~labelled & ~np.isin(codes, self.unlabelled) & (codes != -1)  # -1: transparent
            if unknown.any():
                found = ", ".join(self.show(int(c)) for c in np.unique(codes[unknown])[:5])
                raise InputError(path, f"mask {'colour' if self.colours else 'value'}(s) {found} are neither "
                                       f"landslide nor background nor unlabelled: add them to dataset.yaml 'labels' "
                                       f"(or 'unlabelled: {OTHER}')")
        return landslide.astype(np.uint8), labelled


def _codes_of(path: Path, key: str, raw: Any, colours: bool | None) -> tuple[tuple[int, ...], bool | None]:
    items = raw if isinstance(raw, list) else [raw]
    codes, kinds = [], set()
    for item in items:
        if isinstance(item, list) and len(item) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in item):
            codes.append(colour_code(item))
            kinds.add(True)
        elif isinstance(item, int) and not isinstance(item, bool):
            codes.append(item)
            kinds.add(False)
        else:
            raise InputError(path, f"labels.{key}: each entry is a mask value (e.g. 255) or a colour [r, g, b], "
                                   f"got {item!r}")
    for kind in kinds:
        if colours is not None and kind != colours:
            raise InputError(path, f"labels.{key}: mixes values and colours; give all as values or all as [r, g, b]")
        colours = kind
    return tuple(codes), colours


def parse_labels(path: Path, raw: Any, mask_nodata: float | None = None) -> Labels:
    """dataset.yaml's ``labels`` (and the older ``mask_nodata``) checked; absent: 1 landslide, 0 background."""
    if raw is None:
        unl = () if mask_nodata is None else (int(mask_nodata),)
        return Labels(unlabelled=unl)
    if not isinstance(raw, dict) or not set(raw) <= set(ROLES):
        raise InputError(path, f"'labels' maps {', '.join(ROLES)} to mask values or [r, g, b] colours, e.g. "
                               f"{{landslide: [255], background: [0]}}; got {raw!r}")
    for key in ("landslide", "background"):
        if raw.get(key) in (None, []):
            raise InputError(path, f"labels.{key} is not set: give the mask value(s) or [r, g, b] colour(s) of "
                                   f"{key} pixels (`slidemap dataset` proposes one)")
    colours: bool | None = None
    landslide, colours = _codes_of(path, "landslide", raw["landslide"], colours)
    background, colours = _codes_of(path, "background", raw["background"], colours)
    other = raw.get("unlabelled") == OTHER
    unlabelled: tuple[int, ...] = ()
    if raw.get("unlabelled") is not None and not other:
        unlabelled, colours = _codes_of(path, "unlabelled", raw["unlabelled"], colours)
    if mask_nodata is not None:
        unlabelled += (int(mask_nodata),)
    taken = [c for c in landslide if c in background + unlabelled] + [c for c in background if c in unlabelled]
    if taken:
        raise InputError(path, f"labels: {taken[0]} is listed under two of {', '.join(ROLES)}")
    return Labels(landslide, background, unlabelled, other, bool(colours), True)


def read_mask_bands(path: Path, key: str | None = None) -> np.ndarray:
    """A mask as stored, (bands, H, W); NumPy and HDF5 masks (H, W), (1, H, W) or (H, W, 1|3|4) alike (``key``:
    the HDF5 dataset, None: the file's only one)."""
    if path.suffix.lower() == ".npy" or is_h5(path):
        if is_h5(path):
            data = read_h5(path, key, "masks")
        else:
            try:
                data = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise InputError(path, f"cannot read NumPy array: {' '.join(str(err).split())[:200]}") from err
        if data.ndim == 3 and data.shape[-1] in (1, 3, 4) and data.shape[0] not in (1, 3, 4):
            data = np.moveaxis(data, -1, 0)
        return data[None] if data.ndim == 2 else data
    if path.suffix.lower() == ".png":
        check_png_complete(path)
    with reading(path), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            data = src.read()
            if src.count in (2, 4) and src.colorinterp[-1] == ColorInterp.alpha:
                alpha = data[-1]
                data = data[:-1]
                if (alpha == 0).any():  # a transparent pixel has no label: a code no encoding uses
                    data = data.astype(np.int64)
                    data[:, alpha == 0] = -1
    return data


def mask_codes(path: Path, colours: bool = False, key: str | None = None) -> tuple[np.ndarray, bool]:
    """A mask's codes (H, W) int64 and whether they are colours. One band, or colour channels all equal: the
    values (as colours ``(v, v, v)`` when ``colours``); otherwise colour codes. -1 marks transparent pixels."""
    data = read_mask_bands(path, key)
    if data.ndim != 3 or data.shape[0] not in (1, 3) or data.dtype.kind not in "uif":
        raise InputError(path, f"a mask is one band or an RGB(A) image, got {data.dtype} {data.shape}")
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or (data != np.round(data)).any():
            raise InputError(path, "mask values must be whole numbers (classes), found fractions or NaN")
    grey = data.shape[0] == 1 or (np.array_equal(data[0], data[1]) and np.array_equal(data[0], data[2]))
    if grey:
        codes = data[0].astype(np.int64)
        if colours:
            codes = np.where(codes < 0, -1, (codes << 16) | (codes << 8) | codes)
        return codes, colours
    if data.max() > 255 or ((data < 0) & (data != -1)).any():
        raise InputError(path, "colour masks are 8-bit RGB(A)")
    d = data.astype(np.int64)
    return np.where(d[0] < 0, -1, (d[0] << 16) | (d[1] << 8) | d[2]), True


def histogram(codes: np.ndarray) -> dict[int, int]:
    """Pixels per code of one mask."""
    values, counts = np.unique(codes, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))
