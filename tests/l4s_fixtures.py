"""Tiny Landslide4Sense folders in the exact official layout, written with h5py (no binary blobs in git).

``{TrainData,ValidData,TestData}/img/image_N.h5`` (key ``img``, float64 (128, 128, 14)) and
``.../mask/mask_N.h5`` (key ``mask``, uint8 (128, 128)), numbered from 1 as the official release is.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

SIZE = 128
N_CHANNELS = 14
COUNTS = {"TrainData": 4, "ValidData": 2, "TestData": 3}


def image(seed: int) -> np.ndarray:
    """Small values like the release's: stored channel k is k + U(0, 0.5), so a picked channel is recognisable."""
    rng = np.random.default_rng(seed)
    return np.arange(N_CHANNELS, dtype=np.float64) + 0.5 * rng.random((SIZE, SIZE, N_CHANNELS))


def mask(seed: int) -> np.ndarray:
    """A 0/1 mask with one rectangular landslide of random size and place."""
    rng = np.random.default_rng(1000 + seed)
    out = np.zeros((SIZE, SIZE), np.uint8)
    r, c = rng.integers(0, SIZE - 40, size=2)
    h, w = rng.integers(5, 40, size=2)
    out[r:r + h, c:c + w] = 1
    return out


def write_h5(path: Path, key: str, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=data)
    return path


def write_pair(root: Path, split: str, number: int, img: np.ndarray, msk: np.ndarray | None) -> None:
    """One image (and its mask, if given) under their official names."""
    write_h5(root / split / "img" / f"image_{number}.h5", "img", img)
    if msk is not None:
        write_h5(root / split / "mask" / f"mask_{number}.h5", "mask", msk)


def write_l4s(root: Path, counts: dict[str, int] | None = None) -> Path:
    """A labelled L4S folder; TestData image_1 has NaN in B4 (rows 0-4) and in B1 (row 10: a channel not read
    by default), TrainData image_2 has NaN in slope (column 0)."""
    seed = 0
    for split, n in (counts or COUNTS).items():
        for number in range(1, n + 1):
            img = image(seed)
            if (split, number) == ("TestData", 1):
                img[0:5, :, 3] = np.nan
                img[10, :, 0] = np.nan
            if (split, number) == ("TrainData", 2):
                img[:, 0, 12] = np.nan
            write_pair(root, split, number, img, mask(seed))
            seed += 1
    return root


def read_h5(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[key][()]
