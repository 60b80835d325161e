"""What the Landslide4Sense release stores (iarai, 2022): its channels, their stored scale, its files.

Shared by its own reader (:mod:`slidemap.data.patchsets.landslide4sense`) and by ``slidemap dataset``, which recognises the
release read as a plain HDF5 patch folder and writes the dataset.yaml that gives the same values (kept free of
torch, so the command starts fast).
"""

from __future__ import annotations

import math

from slidemap.data.sites.channels import canonical_all
from slidemap.data.sites.reflectance import L2A_DN_SCALE

STORED: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "slope", "dem")
"""The 14 channels of an ``image_N.h5``, in stored order (the official README: bands 13 = slope, 14 = DEM)."""

STORED_CANONICAL: tuple[str, ...] = canonical_all(STORED)
"""The same channels by their common names (coastal, blue, ..., swir22, slope, dem)."""

STORED_SCALE: tuple[float, ...] = (
    1111.81236406, 824.63171476, 663.41636217, 445.17289745, 645.8582926, 1547.73508126, 1960.44401001,
    1941.32229668, 674.07572865, 9.04787384, 1113.98338755, 519.90397929, 20.29228266, 772.83144788)
"""What the release divided each stored channel by: the dataset authors' per-channel mean vector, given in their
answer to iarai/Landslide4Sense-2022 issue 4 (https://github.com/iarai/Landslide4Sense-2022/issues/4).
stored x STORED_SCALE = B1..B12 as digital numbers (reflectance x 10000), slope in degrees, DEM in metres."""

PATCH = 128
IMAGE_KEY, MASK_KEY = "img", "mask"
"""The HDF5 datasets of ``image_N.h5`` ((128, 128, 14)) and ``mask_N.h5`` ((128, 128), 0/1)."""


def physical_factors() -> tuple[float, ...]:
    """dataset.yaml's per-channel ``scale`` for the release: stored x factor = reflectance for B1..B12 (the mean
    times 1e-4), degrees for slope, metres for the DEM: the units :mod:`~slidemap.data.patchsets.landslide4sense` gives."""
    shift = round(-math.log10(L2A_DN_SCALE))  # a decimal shift, so the factors print as the authors' digits
    return tuple(float(f"{s!r}e-{shift}") if name.startswith("B") else s for name, s in zip(STORED, STORED_SCALE))


def is_release(key: str, shape: tuple[int, ...]) -> bool:
    """Whether an HDF5 image is stored as the release stores its images."""
    return key == IMAGE_KEY and shape == (PATCH, PATCH, len(STORED))
