"""Spectral indices of one date (NDVI) and of two (dNDVI, rdNDVI), as pure functions on reflectance arrays.

rdNDVI is the change metric of HazMapper (Scheip & Wegmann 2021, NHESS 21, 1495-1511), the tool responders use
to map landslides from a pre- and a post-event image: ``(NDVI_post - NDVI_pre) / sqrt(NDVI_post + NDVI_pre) x 100``.
Vegetation removed by a landslide gives a strongly negative value; the square root relativises the change to
how green the pixel was, so a loss from dense forest weighs more than the same loss on sparse grass.
"""

from __future__ import annotations

import numpy as np

NDVI_MIN_DENOMINATOR = 1e-6
"""Below this |NIR + red| (no signal in either band) NDVI is 0 rather than a ratio of noise."""

RDNDVI_MIN_SUM = 0.01
"""rdNDVI's ``NDVI_post + NDVI_pre`` is clamped to at least this value before the square root.

Where both dates are essentially bare (water, rock, snow: the sum is 0 or negative) the square root is undefined
and Earth Engine leaves the pixel empty. A model and a threshold rule need a value on every valid pixel, so the
denominator stops at sqrt(0.01) = 0.1: rdNDVI keeps the sign and order of the NDVI change, stays finite
(|rdNDVI| <= 2 / 0.1 x 100 = 2000) and is continuous in both inputs. Above the clamp it is the published formula.
"""


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """(NIR - red) / (NIR + red) as float32; 0 where |NIR + red| <= ``NDVI_MIN_DENOMINATOR``."""
    red = np.asarray(red, np.float32)
    nir = np.asarray(nir, np.float32)
    denom = nir + red
    return np.divide(nir - red, denom, out=np.zeros_like(denom), where=np.abs(denom) > NDVI_MIN_DENOMINATOR)


def dndvi(ndvi_post: np.ndarray, ndvi_pre: np.ndarray) -> np.ndarray:
    """NDVI_post - NDVI_pre as float32: negative where vegetation was lost (the sign HazMapper uses)."""
    return (np.asarray(ndvi_post, np.float32) - np.asarray(ndvi_pre, np.float32)).astype(np.float32, copy=False)


def rdndvi(ndvi_post: np.ndarray, ndvi_pre: np.ndarray) -> np.ndarray:
    """(NDVI_post - NDVI_pre) / sqrt(max(NDVI_post + NDVI_pre, RDNDVI_MIN_SUM)) x 100 as float32."""
    post = np.asarray(ndvi_post, np.float32)
    pre = np.asarray(ndvi_pre, np.float32)
    denom = np.sqrt(np.maximum(post + pre, np.float32(RDNDVI_MIN_SUM)))
    return ((post - pre) / denom * np.float32(100.0)).astype(np.float32, copy=False)
