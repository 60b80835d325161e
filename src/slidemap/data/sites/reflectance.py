"""Stored band values to the site contract's units: the one place that picks the scale and applies it.

Surface reflectance (Sentinel-2 and any calibrated sensor): integer DNs / 10000 unless site.yaml gives ``scale``
and ``offset`` (the L2A convention, also PlanetScope's surface reflectance). Brightness (site.yaml ``units:
brightness``: uncalibrated imagery such as 8-bit aerial or UAV RGB): uint8 divided by 255 unless a ``scale`` is
given (other integer types must give one), so values lie in 0-1. A site's image and its pre-event image both come
through here, so both dates get the same units (a change channel of two differently scaled images would be noise).
"""

from __future__ import annotations

import numpy as np

from slidemap.errors import InputError

L2A_DN_SCALE = 1e-4
"""Integer L2A DNs are reflectance x 10000."""

MAX_MEDIAN_REFLECTANCE = 2.0
"""No scene's median surface reflectance comes near 2 (fresh snow and bright clouds stay below ~1.2); a median
above it means the values are still digital numbers (x 10000) or otherwise not reflectance."""


BRIGHTNESS_UINT8_SCALE = 1.0 / 255.0
"""8-bit brightness to 0-1."""


def conversion(dtype: np.dtype, scale: float | None, offset: float | None, unit: str = "reflectance",
               source: object = None) -> tuple[float, float]:
    """(scale, offset) to ``unit``: those given (site.yaml, dataset.yaml), else floats as they are, integer
    reflectance DN / 10000 and uint8 brightness / 255. Other integer brightness has no safe default (12-bit values
    in uint16 would come out 16x too dark) and is refused, naming ``source``: site and patch readers share this."""
    dtype = np.dtype(dtype)
    if scale is not None or dtype.kind == "f":
        default_scale = 1.0
    elif unit == "brightness":
        if dtype != np.uint8:
            raise InputError(source, f"{dtype} brightness has no default scale (uint8 is / 255): give 'scale' in "
                                     f"site.yaml or dataset.yaml, e.g. {1 / 4095:.6g} for 12-bit values")
        default_scale = BRIGHTNESS_UINT8_SCALE
    else:
        default_scale = L2A_DN_SCALE
    return float(default_scale if scale is None else scale), float(offset or 0.0)


def to_reflectance(dn: np.ndarray, valid: np.ndarray, scale: float | None = None, offset: float | None = None,
                   fill: float = 0.0, unit: str = "reflectance", source: object = None) -> np.ndarray:
    """Bands (k, H, W) of DNs as float32 reflectance ``dn x scale + offset``; ``fill`` where ``valid`` is False.

    Scale and offset are applied in float32, each only when it changes something, so reflectance that is stored
    as such passes through bit for bit.
    """
    scale, offset = conversion(dn.dtype, scale, offset, unit, source)
    refl = dn.astype(np.float32)
    if scale != 1.0:
        refl *= np.float32(scale)
    if offset != 0.0:
        refl += np.float32(offset)
    refl[:, ~valid] = fill
    return refl


def check_reflectance(refl: np.ndarray, valid: np.ndarray, source: object, scale: float | None,
                      unit: str = "reflectance") -> None:
    """Refuse values that cannot be surface reflectance (median above :data:`MAX_MEDIAN_REFLECTANCE`), naming the
    file and what to set: float digital numbers without a ``scale`` in site.yaml would be read as reflectance
    thousands of times too bright, and everything downstream would be silently wrong."""
    if not valid.any():
        return
    values = refl[:, valid][:, :: max(1, int(valid.sum()) // 100_000)]  # a bounded sample of every band
    median = float(np.median(values))
    if median <= MAX_MEDIAN_REFLECTANCE:
        return
    if unit == "brightness":
        raise InputError(source, f"values cannot be brightness scaled to 0-1 (median {median:.4g} after "
                                 f"conversion): set site.yaml 'scale' (e.g. {1 / 4095:.6g} for 12-bit imagery)")
    if scale is None:
        hint = ("they look like digital numbers: add 'scale: 0.0001' (and 'offset', e.g. -0.1 for processing "
                "baseline 04.00 and later) to the site's site.yaml")
    else:
        hint = f"check site.yaml's 'scale' ({scale:g}) and 'offset'"
    raise InputError(source, f"values cannot be surface reflectance (median {median:.4g} after conversion; "
                             f"reflectance lies in 0-1): {hint}")
