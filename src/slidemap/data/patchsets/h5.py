"""HDF5 patch files: the one array of a file (its only dataset, or the one dataset.yaml names), read by h5py.

Public releases store a patch as an HDF5 file holding one array (Landslide4Sense: ``img`` (128, 128, 14) in
``image_N.h5``, ``mask`` (128, 128) in ``mask_N.h5``) or several (an image next to its metadata). A file whose only
dataset is the array needs nothing; otherwise dataset.yaml's ``h5_key`` names it (``{images: img, masks: mask}``,
or one name for both; a name may be a path inside the file, ``group/img``). Headers come from the dataset's shape
and dtype, which h5py reads without reading a pixel. Every h5py error is re-raised naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from slidemap.errors import InputError

SUFFIXES: tuple[str, ...] = (".h5", ".hdf5")
ROLES: tuple[str, ...] = ("images", "masks")
MAX_NAMES = 8
"""Datasets listed by name in a message about a file that holds several."""


@dataclass(frozen=True)
class H5Keys:
    """dataset.yaml ``h5_key``: the dataset holding the image and the mask in their files (None: the only one)."""

    images: str | None = None
    masks: str | None = None

    def of(self, role: str) -> str | None:
        return self.images if role == "images" else self.masks


def parse_h5_key(path: Path, raw: Any) -> H5Keys:
    """dataset.yaml's ``h5_key`` (``path``) checked: one dataset name for both, or ``{images: .., masks: ..}``."""
    if raw is None:
        return H5Keys()
    if isinstance(raw, str) and raw:
        return H5Keys(raw, raw)
    if isinstance(raw, dict) and raw and set(raw) <= set(ROLES) and all(isinstance(v, str) and v
                                                                        for v in raw.values()):
        return H5Keys(raw.get("images"), raw.get("masks"))
    raise InputError(path, f"'h5_key' names the dataset inside each HDF5 file, e.g. {{images: img, masks: mask}} "
                           f"(or one name for both), got {raw!r}")


def is_h5(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def _datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _listed(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:MAX_NAMES])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_NAMES else "")


def _locate(path: Path, f: h5py.File, key: str | None, role: str) -> h5py.Dataset:
    """The file's array: the dataset ``key``, else its only dataset; numeric, 2-D or 3-D."""
    if key is not None:
        found = f.get(key)
        if not isinstance(found, h5py.Dataset):
            raise InputError(path, f"has no dataset '{key}' (dataset.yaml 'h5_key' for {role}); it holds "
                                   f"{_listed(_datasets(f)) or 'no dataset'}")
        ds = found
    else:
        names = _datasets(f)
        if not names:
            raise InputError(path, "holds no dataset: an HDF5 patch is one array")
        if len(names) > 1:
            raise InputError(path, f"holds {len(names)} datasets ({_listed(names)}): name the {role[:-1]} array "
                                   f"with 'h5_key: {{{role}: NAME}}' in dataset.yaml")
        ds = f[names[0]]
    what = "image" if role == "images" else "mask"
    if ds.dtype.kind not in "uifb":
        raise InputError(path, f"dataset '{ds.name.lstrip('/')}' is {ds.dtype}: an {what} must be a numeric array")
    if ds.ndim not in (2, 3):
        raise InputError(path, f"dataset '{ds.name.lstrip('/')}' is {ds.ndim}-d {tuple(ds.shape)}: an {what} is "
                               f"(H, W), (C, H, W) or (H, W, C)")
    return ds


@contextmanager
def _opened(path: Path, key: str | None, role: str) -> Iterator[h5py.Dataset]:
    try:
        with h5py.File(path, "r") as f:
            yield _locate(path, f, key, role)
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise InputError(path, f"cannot read HDF5 file: {' '.join(str(err).split())[:200]}") from err


def h5_header(path: Path, key: str | None, role: str = "images") -> tuple[tuple[int, ...], np.dtype, str]:
    """The array's shape, dtype and dataset name, without reading its values."""
    with _opened(path, key, role) as ds:
        return tuple(int(s) for s in ds.shape), np.dtype(ds.dtype), ds.name.lstrip("/")


def read_h5(path: Path, key: str | None, role: str = "images") -> np.ndarray:
    """The whole array as stored (booleans as uint8)."""
    with _opened(path, key, role) as ds:
        data = ds[()]
    return data.astype(np.uint8) if data.dtype == bool else data
