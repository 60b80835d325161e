"""Sentinel-2 digital numbers to surface reflectance: the one place that picks the scale and applies it.

s2.tif and s2_pre.tif both come through here, so a pre- and a post-event image of the same source get the same
units (a change channel of two differently scaled images would be noise).
"""

from __future__ import annotations

import numpy as np

L2A_DN_SCALE = 1e-4
"""Integer L2A DNs are reflectance x 10000."""


def conversion(dtype: np.dtype, scale: float | None, offset: float | None) -> tuple[float, float]:
    """(scale, offset) to reflectance: those given (site.yaml), else integer DN / 10000 and floats as they are."""
    default_scale = 1.0 if np.dtype(dtype).kind == "f" else L2A_DN_SCALE
    return float(default_scale if scale is None else scale), float(offset or 0.0)


def to_reflectance(dn: np.ndarray, valid: np.ndarray, scale: float | None = None, offset: float | None = None,
                   fill: float = 0.0) -> np.ndarray:
    """Bands (k, H, W) of DNs as float32 reflectance ``dn x scale + offset``; ``fill`` where ``valid`` is False.

    Scale and offset are applied in float32, each only when it changes something, so reflectance that is stored
    as such passes through bit for bit.
    """
    scale, offset = conversion(dn.dtype, scale, offset)
    refl = dn.astype(np.float32)
    if scale != 1.0:
        refl *= np.float32(scale)
    if offset != 0.0:
        refl += np.float32(offset)
    refl[:, ~valid] = fill
    return refl
