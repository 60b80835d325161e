"""A patch folder's files: dataset.yaml, image/mask pairs in GeoTIFF, PNG, JPEG, NumPy or HDF5, in physical units.

The common layout of public landslide patch datasets (Bijie, CAS Landslide, GVLM, HR-GLDD, ...) is
``DIR/{train,val,test}/{images,masks}/`` with an image and its mask paired by file stem; others name their folders
and pair their files otherwise (:mod:`slidemap.data.patchsets.layout`) and encode masks otherwise
(:mod:`slidemap.data.patchsets.masks`). The files say nothing of what their channels are, so ``DIR/dataset.yaml`` does
(:class:`PatchSpec`, written by ``slidemap dataset``); this module turns one pair into the
chosen input channels in the contract's units (bands as reflectance or brightness 0-1, slope in degrees, DEM in
metres), deriving slope (Horn, at the dataset's pixel size, from the patch's own DEM) and NDVI where asked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from slidemap.data.patchsets.h5 import H5Keys, parse_h5_key, read_h5
from slidemap.data.patchsets.headers import ARRAY_FORMATS
from slidemap.data.patchsets.layout import Layout, parse_layout
from slidemap.data.patchsets.masks import Labels, parse_labels
from slidemap.data.sites.channels import NDVI_BANDS, OPTICAL_UNITS, bands_needed, canonical_all, is_band, is_pre
from slidemap.data.sites.indices import ndvi
from slidemap.data.sites.raster import reading, valid_mask
from slidemap.data.sites.reflectance import MAX_MEDIAN_REFLECTANCE, conversion
from slidemap.data.sites.terrain import horn_slope
from slidemap.data.sites.units import REFLECTANCE
from slidemap.errors import InputError

SPEC_FILE = "dataset.yaml"
FORMATS: dict[str, str] = {".tif": "GeoTIFF", ".tiff": "GeoTIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG",
                           ".npy": "NumPy", ".h5": "HDF5", ".hdf5": "HDF5"}
"""File suffixes read (case-insensitive); PNG and JPEG go through GDAL like GeoTIFF, HDF5 through h5py
(:mod:`~slidemap.data.patchsets.h5`)."""

STORABLE: tuple[str, ...] = ("slope", "dem", "ndvi")
"""Channels other than bands that a dataset may store (as they are: degrees, metres, index)."""

KEYS: tuple[str, ...] = ("channels", "units", "scale", "offset", "nodata", "normalise", "pixel_size", "windows",
                         "name", "npy_layout", "h5_key", "splits", "images", "masks", "pairing", "labels",
                         "mask_nodata")
"""The keys of dataset.yaml; any other is refused (a typo would otherwise be silently ignored)."""

NORMALISE: tuple[str, ...] = ("dataset", "per_patch")
"""``dataset``: one normaliser fitted on the train split (the paper); ``per_patch``: each patch standardised by its
own mean and std per channel first (8-bit renderings stretched one by one have no common brightness scale)."""


@dataclass(frozen=True)
class PatchSpec:
    """What dataset.yaml says about the patches: channels in file order and how to read them.

    Attributes:
        path: The dataset.yaml (named in every error about the dataset as a whole).
        channels: Stored channels in file order, canonical (``B4`` -> ``red``).
        units: What the band values are: 'reflectance' or 'brightness'.
        scale, offset: band value = stored x scale + offset; None = the default of the file's dtype
            (:func:`band_conversion`).
        scales: ``scale`` given as a list: one factor per stored channel, bands and dem/slope alike (stored x
            factor = the channel's unit), for releases that divided each channel by its own mean
            (Landslide4Sense); ``scale`` is then None and ``offset`` still applies to bands.
        pixel_size: Metres per pixel; slope derived from ``dem`` needs it.
        windows: Windows this dataset accepts (each must tile the patch size); None = the paper's.
        name: The test area's name.
        hwc: Array images (NumPy, HDF5) are (H, W, C) instead of (C, H, W) (``npy_layout: hwc``).
        nodata: Image value of pixels without data: a pixel whose every stored channel holds it is invalid.
        per_patch: ``normalise: per_patch`` (see :data:`NORMALISE`).
        layout: Folders and pairing (:class:`~slidemap.data.patchsets.layout.Layout`).
        labels: Mask encoding (:class:`~slidemap.data.patchsets.masks.Labels`; ``mask_nodata`` is one unlabelled value).
        h5: The HDF5 datasets holding images and masks (``h5_key``; None: a file's only dataset).
    """

    path: Path
    channels: tuple[str, ...]
    units: str = REFLECTANCE
    scale: float | None = None
    offset: float | None = None
    pixel_size: float | None = None
    windows: tuple[int, ...] | None = None
    name: str = ""
    hwc: bool = False
    nodata: float | None = None
    per_patch: bool = False
    layout: Layout = Layout()
    labels: Labels = Labels()
    h5: H5Keys = H5Keys()
    scales: tuple[float, ...] | None = None

    def available(self) -> tuple[str, ...]:
        """Every channel the dataset can give: its own, slope from a DEM, NDVI from red and nir."""
        names = self.channels
        if "dem" in names and "slope" not in names:
            names += ("slope",)
        if all(b in names for b in NDVI_BANDS) and "ndvi" not in names:
            names += ("ndvi",)
        return names

    def check_inputs(self, inputs: tuple[str, ...]) -> tuple[int, ...]:
        """The stored channels (indexes in file order) the inputs need; one line for a channel it cannot give."""
        need: list[str] = []
        for c in inputs:
            if is_pre(c):
                raise InputError(self.path, f"a patch dataset has no pre-event image: channel {c} needs one; use "
                                            "inputs=post, rgb or rgbn")
            if c in self.channels:
                need.append(c)
            elif c == "slope" and "dem" in self.channels:
                if self.pixel_size is None:
                    raise InputError(self.path, "channel slope is derived from the dem channel at the true pixel "
                                                "size: give 'pixel_size' (metres)")
                need.append("dem")
            elif c == "ndvi" and all(b in self.channels for b in NDVI_BANDS):
                need.extend(NDVI_BANDS)
            else:
                lacking = ["dem"] if c == "slope" else [b for b in (bands_needed(c) or (c,)) if b not in self.channels]
                needs = "" if lacking in ([c], []) else f" (channel {c} needs {', '.join(lacking)})"
                raise InputError(self.path, f"the dataset has no {' or '.join(lacking or [c])} channel{needs}; "
                                            f"it gives {', '.join(self.available())}")
        return tuple(sorted({self.channels.index(c) for c in need}))


def _number(path: Path, key: str, value: Any, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (positive and not value > 0):
        raise InputError(path, f"'{key}' must be a {'positive ' if positive else ''}number, got {value!r}")
    return float(value)


def _scales(path: Path, value: Any, channels: tuple[str, ...]) -> tuple[float, ...] | None:
    """``scale`` as a list: one positive factor per channel in file order (None: a number or absent)."""
    if not isinstance(value, list):
        return None
    if len(value) != len(channels):
        raise InputError(path, f"'scale' lists {len(value)} factor(s) for {len(channels)} channel(s) "
                               f"({', '.join(channels)}): give one number for the bands, or one factor per channel")
    factors = tuple(_number(path, f"scale[{i}]", v, positive=True) for i, v in enumerate(value))
    if None in factors:
        raise InputError(path, f"'scale' lists a null factor (channel {channels[factors.index(None)]})")
    return tuple(float(f) for f in factors if f is not None)


def load_spec(root: Path) -> PatchSpec:
    """``root/dataset.yaml`` checked key by key; every problem is one line naming the file."""
    path = root / SPEC_FILE
    if not path.is_file():
        raise InputError(path, f"missing: a patch dataset needs dataset.yaml (its layout, channels in file order, "
                               f"units, mask encoding): `slidemap dataset {root} --write` infers it")
    try:
        meta = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(path, f"malformed YAML: {' '.join(str(err).split())[:200]}") from err
    if not isinstance(meta, dict):
        raise InputError(path, f"must be a mapping ({', '.join(KEYS)}), got {type(meta).__name__}")
    unknown = sorted(str(k) for k in meta if k not in KEYS)
    if unknown:
        raise InputError(path, f"unknown key(s) {', '.join(unknown)}; the keys are {', '.join(KEYS)}")
    listed = meta.get("channels")
    if not isinstance(listed, list) or not listed or not all(isinstance(c, str) for c in listed):
        raise InputError(path, "'channels' must list the image channels in file order, e.g. [red, green, blue, dem]")
    try:
        channels = canonical_all(listed)
    except ValueError as err:
        raise InputError(path, f"channels: {err}") from None
    odd = [c for c in channels if not (is_band(c) or c in STORABLE)]
    if odd or len(set(channels)) < len(channels):
        what = f"{', '.join(odd)} cannot be stored" if odd else "a channel is listed twice"
        raise InputError(path, f"channels: {what}; list bands (common names or Sentinel-2 ids), dem, slope, ndvi")
    units = str(meta.get("units", REFLECTANCE))
    if units not in OPTICAL_UNITS:
        raise InputError(path, f"'units' must be one of {', '.join(OPTICAL_UNITS)}, got {units!r}")
    windows = meta.get("windows")
    if windows is not None and (not isinstance(windows, list) or not windows or
                                not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in windows)):
        raise InputError(path, f"'windows' must list window sizes in pixels, e.g. [256], got {windows!r}")
    layout = str(meta.get("npy_layout", "chw")).lower()
    if layout not in ("chw", "hwc"):
        raise InputError(path, f"'npy_layout' must be chw or hwc, got {meta.get('npy_layout')!r}")
    name = str(meta.get("name") or root.resolve().name)
    if name == "all":
        raise InputError(path, "'name' cannot be 'all': metrics.json pools every test area under that name")
    normalise = meta.get("normalise", "dataset")
    if normalise not in NORMALISE:
        raise InputError(path, f"'normalise' must be one of {', '.join(NORMALISE)}, got {normalise!r}")
    scales = _scales(path, meta.get("scale"), channels)
    return PatchSpec(path, channels, units,
                     None if scales else _number(path, "scale", meta.get("scale"), positive=True),
                     _number(path, "offset", meta.get("offset")),
                     _number(path, "pixel_size", meta.get("pixel_size"), positive=True),
                     tuple(windows) if windows is not None else None, name, layout == "hwc",
                     _number(path, "nodata", meta.get("nodata")), normalise == "per_patch",
                     parse_layout(path, meta),
                     parse_labels(path, meta.get("labels"), _number(path, "mask_nodata", meta.get("mask_nodata"))),
                     parse_h5_key(path, meta.get("h5_key")), scales)


def band_conversion(dtype: np.dtype, spec: PatchSpec, source: Path) -> tuple[float, float]:
    """(scale, offset) from stored band values to the dataset's unit: dataset.yaml's ``scale``/``offset``, else the
    site reader's defaults (:func:`~slidemap.data.sites.reflectance.conversion`: floats as they are, integer reflectance
    DN / 10000, uint8 brightness / 255, other integer brightness refused); with per-channel ``scales`` the bands'
    factors are those (scale 1 here)."""
    return conversion(dtype, 1.0 if spec.scales else spec.scale, spec.offset, spec.units, source)


def _fmt(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(path, f"unknown format {path.suffix or '(no suffix)'}: patches are "
                               f"{', '.join(sorted(set(FORMATS.values())))} ({', '.join(FORMATS)})")
    return fmt


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read NumPy array: {' '.join(str(err).split())[:200]}") from err


def npy_layout_problem(path: Path, shape: tuple[int, ...], spec: PatchSpec) -> InputError | None:
    """An array image (NumPy, HDF5) stored (H, W, C) while dataset.yaml says (C, H, W) (the default), or the
    reverse: named with the key that fixes it, instead of a window or channel count error far from the cause."""
    n = len(spec.channels)
    if len(shape) != 3:
        return None
    if not spec.hwc and shape[0] != n and shape[-1] == n:
        return InputError(path, f"array is {shape}: looks (H, W, C) with the {n} channels last; set 'npy_layout: "
                                f"hwc' in {spec.path}")
    if spec.hwc and shape[-1] != n and shape[0] == n:
        return InputError(path, f"array is {shape}: looks (C, H, W) with the {n} channels first; remove "
                                f"'npy_layout: hwc' from {spec.path}")
    return None


def read_raw(path: Path, spec: PatchSpec) -> tuple[np.ndarray, np.ndarray]:
    """An image as stored (C, H, W) and the pixels valid in each channel (C, H, W): nodata (the file's and
    dataset.yaml's ``nodata``), NaN, alpha honoured."""
    fmt = _fmt(path)
    if fmt in ARRAY_FORMATS:
        data = _load_npy(path) if fmt == "NumPy" else read_h5(path, spec.h5.images, "images")
        problem = npy_layout_problem(path, data.shape, spec)
        if problem is not None:
            raise problem
        if data.ndim == 2:
            data = data[None]
        elif data.ndim == 3 and spec.hwc:
            data = np.moveaxis(data, -1, 0)
        if data.ndim != 3 or data.dtype.kind not in "uif":
            raise InputError(path, f"an image must be a numeric ({'H, W, C' if spec.hwc else 'C, H, W'}) array, "
                                   f"got {data.dtype} {data.shape}")
        valid = np.isfinite(data) if data.dtype.kind == "f" else np.ones(data.shape, bool)
    else:
        with reading(path), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                count = src.count
                alpha = count == len(spec.channels) + 1 and src.colorinterp[-1] == ColorInterp.alpha
                indexes = list(range(1, count + (0 if alpha else 1)))
                data = src.read(indexes)
                valid = np.stack([valid_mask(src, i, data[i - 1]) for i in indexes])
                if alpha:
                    valid &= src.read(count)[None] > 0
    if spec.nodata is not None:
        valid &= ~(data == spec.nodata).all(axis=0)[None]
    return data, valid


def read_mask(path: Path, shape: tuple[int, int], labels: Labels,
              key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A 0/1 landslide mask (H, W) uint8 and its labelled pixels, decoded by dataset.yaml's ``labels`` (``key``:
    the HDF5 dataset of masks)."""
    y, labelled = labels.read(path, key)
    if y.shape != shape:
        raise InputError(path, f"mask is {' x '.join(map(str, y.shape))} px, its image {shape[0]} x {shape[1]} px")
    return y, labelled


def to_inputs(path: Path, raw: np.ndarray, valid: np.ndarray, spec: PatchSpec,
              inputs: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The chosen input channels (C, H, W) float32 in physical units (0 where invalid) and the valid pixels.

    A pixel is valid where every stored channel the inputs read is; slope also needs the DEM's 3 x 3
    neighbourhood (Horn), so it is NaN, hence invalid, next to a missing elevation.
    """
    if raw.shape[0] != len(spec.channels):
        raise InputError(path, f"has {raw.shape[0]} channel(s); {spec.path} lists {len(spec.channels)} "
                               f"({', '.join(spec.channels)})")
    used = spec.check_inputs(inputs)
    ok = np.logical_and.reduce(valid[list(used)])
    scale, offset = band_conversion(raw.dtype, spec, path)
    stored: dict[str, np.ndarray] = {}
    for i in used:
        values = raw[i].astype(np.float32)
        if spec.scales is not None and spec.scales[i] != 1.0:
            values *= np.float32(spec.scales[i])
        if is_band(spec.channels[i]):
            values = values * np.float32(scale) + np.float32(offset)
        stored[spec.channels[i]] = np.where(valid[i], values, np.nan)  # a DEM gap alone spreads to slope
    check_band_values(path, spec, stored, ok, scale, offset)

    def channel(c: str) -> np.ndarray:
        if c in stored:
            return stored[c]
        if c == "slope":
            return horn_slope(stored["dem"], spec.pixel_size, spec.pixel_size)
        return ndvi(stored["red"], stored["nir"])

    x = np.stack([channel(c) for c in inputs]).astype(np.float32, copy=False)
    ok &= np.isfinite(x).all(axis=0)
    x[:, ~ok] = 0.0
    return x, ok


def check_band_values(path: Path, spec: PatchSpec, stored: dict[str, np.ndarray], valid: np.ndarray, scale: float,
                      offset: float) -> None:
    """Refuse band values that cannot be reflectance or brightness 0-1 (median above 2): a wrong or missing
    ``scale`` would otherwise train on values in another unit than the checkpoint records."""
    bands = [v[valid] for c, v in stored.items() if is_band(c)]
    if not bands or not valid.any():
        return
    median = float(np.median(np.concatenate(bands)))
    if median > MAX_MEDIAN_REFLECTANCE:
        given = "the per-channel scale" if spec.scales else f"scale {scale:g}"
        raise InputError(path, f"band values cannot be {spec.units} (median {median:.4g} after {given}, "
                               f"offset {offset:g}; {spec.units} lies in 0-1): set 'scale' in {spec.path}")
