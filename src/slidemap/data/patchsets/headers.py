"""A patch image's header (bands, size, data type) without reading its pixels: thousands of patches in seconds.

PNG headers are parsed from the IHDR chunk as the PNG specification lays it out (W3C PNG, section 11.2.2: width,
height, bit depth, colour type right after the 8-byte signature), NumPy headers by ``np.load(mmap_mode='r')``, HDF5
headers from the dataset's shape and dtype (:mod:`~slidemap.data.patchsets.h5`); everything else (GeoTIFF, JPEG)
through GDAL, which reads only the header on open.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from slidemap.data.patchsets.h5 import H5Keys, h5_header
from slidemap.data.sites.raster import reading
from slidemap.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
"""The IEND chunk every PNG ends with (PNG specification, 11.2.5: length 0, type, CRC): a file that does not end
so was cut short, and GDAL decodes what it can of it without a word (zeros for the rest)."""
ARRAY_FORMATS: tuple[str, ...] = ("NumPy", "HDF5")
"""Formats stored as a bare array, (C, H, W) or (H, W, C) as dataset.yaml's ``npy_layout`` says."""
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
"""PNG colour type -> samples per pixel as GDAL reads them (grey, RGB, palette index, grey + alpha, RGBA)."""


@dataclass(frozen=True)
class Header:
    """What the structure check needs of an image: format, bands (alpha included), rows, cols, dtype.

    ``alpha``: the last band is an alpha band (PNG colour types 4 and 6, a GeoTIFF band interpreted as alpha).
    ``shape3``: an array's shape as stored (NumPy, HDF5; for the (C, H, W) / (H, W, C) check).
    ``key``: the HDF5 dataset the array was read from.
    """

    fmt: str
    bands: int
    rows: int
    cols: int
    dtype: str
    alpha: bool = False
    shape3: tuple[int, ...] = ()
    key: str = ""


def check_png_complete(path: Path) -> None:
    """Refuse a PNG without its IEND chunk near its end (truncated: a partial download or copy); bytes some tools
    append after IEND are tolerated."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 4096))
        if PNG_END not in f.read():
            raise InputError(path, f"cannot read: the PNG file is truncated ({size} bytes, no IEND chunk at its end: "
                                   "download or copy it again)")


def _png(path: Path) -> Header:
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise InputError(path, "cannot read: not a PNG file (no PNG signature and IHDR chunk)")
    check_png_complete(path)
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    if colour not in PNG_CHANNELS:
        raise InputError(path, f"cannot read: PNG colour type {colour} is not in the PNG specification")
    return Header("PNG", PNG_CHANNELS[colour], height, width, "uint16" if depth == 16 else "uint8",
                  alpha=colour in (4, 6))


def _array(path: Path, fmt: str, shape: tuple[int, ...], dtype: np.dtype, key: str = "") -> Header:
    if len(shape) == 2:
        return Header(fmt, 1, shape[0], shape[1], str(dtype), shape3=shape, key=key)
    if len(shape) != 3:
        raise InputError(path, f"an image must be a (C, H, W) or (H, W, C) array, got shape {shape}")
    return Header(fmt, shape[0], shape[1], shape[2], str(dtype), shape3=shape, key=key)


def _npy(path: Path) -> Header:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read NumPy array: {' '.join(str(err).split())[:200]}") from err
    return _array(path, "NumPy", tuple(int(s) for s in data.shape), data.dtype)


def _gdal(path: Path, fmt: str) -> Header:
    with reading(path), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            alpha = src.count > 1 and src.colorinterp[-1] == ColorInterp.alpha
            return Header(fmt, src.count, src.height, src.width, src.dtypes[0], alpha)


def read_header(path: Path, fmt: str, keys: H5Keys = H5Keys()) -> Header:
    """The header of one image of format ``fmt`` (see ``patch_files.FORMATS``); ``keys``: the HDF5 datasets."""
    if fmt == "PNG":
        return _png(path)
    if fmt == "NumPy":
        return _npy(path)
    if fmt == "HDF5":
        shape, dtype, key = h5_header(path, keys.images, "images")
        return _array(path, fmt, shape, dtype, key)
    return _gdal(path, fmt)
