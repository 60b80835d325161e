"""Tiny Landslide4Sense folders in the exact official layout, written with h5py (no binary blobs in git).

``{TrainData,ValidData,TestData}/img/image_N.h5`` (key ``img``, float64 (128, 128, 14)) and
``.../mask/mask_N.h5`` (key ``mask``, uint8 (128, 128)), numbered from 1 as the official release is.
:func:`write_l4s_from_sites` cuts such a folder from site folders, stored as the release stores it (physical
values divided by :data:`AUTHORS_MEANS`), so a model trained on it can be checked on the same ground in physical units.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

SIZE = 128
N_CHANNELS = 14
COUNTS = {"TrainData": 4, "ValidData": 2, "TestData": 3}

AUTHORS_MEANS = (1111.81236406, 824.63171476, 663.41636217, 445.17289745, 645.8582926, 1547.73508126,
                 1960.44401001, 1941.32229668, 674.07572865, 9.04787384, 1113.98338755, 519.90397929, 20.29228266,
                 772.83144788)
"""What the release divides B1..B12 (DN, reflectance x 10000), slope (degrees) and DEM (metres) by: copied from the
dataset authors' answer in iarai/Landslide4Sense-2022 issue 4 (as issue 15 quotes it), not from slidemap's code."""


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


def physical_channels(bands: np.ndarray, slope: np.ndarray, dem: np.ndarray) -> np.ndarray:
    """The 14 L4S channels (H, W, 14) in physical units from reflectance B2, B3, B4, B8 (4, H, W), slope, DEM.

    Bands a site lacks are plausible mixtures of the four (none of them is an input here): B1 ~ B2, the red edge
    between B4 and B8, B9/B11/B12 from B8 and B4, B10 (cirrus) near 0. Bands become DN (x 10000).
    """
    b2, b3, b4, b8 = bands
    refl = [b2, b2, b3, b4, (2 * b4 + b8) / 3, (b4 + 2 * b8) / 3, b8, b8, 0.3 * b8, np.full_like(b2, 0.002),
            0.5 * b8 + 0.1, 0.5 * b4 + 0.05]
    return np.stack([*(r * 1e4 for r in refl), slope, dem], axis=-1).astype(np.float64)


def write_l4s_from_sites(root: Path, sites: dict, splits: dict, stride: int = 64) -> dict[str, list]:
    """An L4S copy of sites: TrainData = 128 px patches of each training area every ``stride`` px, ValidData =
    every other one of those, TestData = the non-overlapping 128 px tiles of each test area. Stored values are
    physical / :data:`AUTHORS_MEANS`, invalid pixels NaN (as the release's no-data).

    Returns ``{"TestData": [(site, row, col), ...]}``: where each test image lies, in its image number order.
    """
    origins: dict[str, list] = {"TrainData": [], "ValidData": [], "TestData": []}
    for name, site in sites.items():
        train, test = splits[name].train, splits[name].test
        starts = [(r, c) for r in range(train.row0, train.row0 + train.rows - SIZE + 1, stride)
                  for c in range(train.col0, train.col0 + train.cols - SIZE + 1, stride)]
        origins["TrainData"] += [(name, r, c) for r, c in starts]
        origins["ValidData"] += [(name, r, c) for r, c in starts[1::2]]
        origins["TestData"] += [(name, r, c) for r in range(test.row0, test.row0 + test.rows - SIZE + 1, SIZE)
                                for c in range(test.col0, test.col0 + test.cols - SIZE + 1, SIZE)]
    for split, where in origins.items():
        for number, (name, r, c) in enumerate(where, start=1):
            site = sites[name]
            rows, cols = slice(r, r + SIZE), slice(c, c + SIZE)
            img = physical_channels(site.bands[:, rows, cols], site.slope[rows, cols], site.dem[rows, cols])
            img = (img / np.asarray(AUTHORS_MEANS)).astype(np.float32)
            img[~site.valid[rows, cols]] = np.nan
            write_pair(root, split, number, img, site.label[rows, cols].astype(np.uint8))
    return origins
