"""Every input channel's physical unit, and the distribution of channels sampled from valid pixels in bounded memory.

The site contract (README, "The data contract") fixes the units: Sentinel-2 bands as reflectance, slope in
degrees, DEM in metres, indices unitless. Readers convert to them (``reflectance.py``, Landslide4Sense's mean
vector); a checkpoint records each channel's unit and its training distribution, so mapping can refuse a scene in
other units
(:mod:`slidemap.mapping.unit_guard`) instead of silently producing a wrong map.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slidemap.data.sites.channels import OPTICAL_UNITS, canonical, canonical_all, is_band

REFLECTANCE, BRIGHTNESS, DEGREES, METRES, INDEX = "reflectance", "brightness", "degrees", "metres", "index"

DERIVED_UNITS: dict[str, str] = {"slope": DEGREES, "dem": METRES, "ndvi": INDEX, "ndvi_pre": INDEX, "dndvi": INDEX,
                                 "rdndvi": INDEX}  # ratios: no unit (rdNDVI is x 100)
"""The unit of every channel that is not a band; a band's unit is its site's (reflectance or brightness)."""


def unit_of(channel: str, optical_unit: str = REFLECTANCE) -> str:
    """The unit of one channel; bands (post- or pre-event) take the site's ``optical_unit``."""
    c = canonical(channel)
    if c in DERIVED_UNITS:
        return DERIVED_UNITS[c]
    if optical_unit not in OPTICAL_UNITS:
        raise ValueError(f"unknown optical unit {optical_unit!r}; expected one of {', '.join(OPTICAL_UNITS)}")
    return optical_unit


def units_of(channels: Sequence[str], optical_unit: str = REFLECTANCE) -> tuple[str, ...]:
    """The unit of each channel, in order."""
    return tuple(unit_of(c, optical_unit) for c in channels)


def is_optical(channel: str) -> bool:
    """Whether a channel holds band values (post- or pre-event), whose unit is the site's optical unit."""
    c = canonical(channel)
    return is_band(c.removesuffix("_pre"))


QUANTILES: tuple[int, ...] = (1, 10, 50, 90, 99)
"""Percentiles a :class:`Distribution` keeps: enough to tell a unit or a band order from the median and the tails."""

SAMPLE_SIZE = 100_000
"""Pixels kept for the quantiles: a uniform sample, so memory does not grow with the area (a whole S2 tile too)."""


@dataclass(frozen=True)
class Distribution:
    """Per-channel statistics of valid pixels: exact mean and std, percentiles :data:`QUANTILES` from a sample.

    Attributes:
        channels: Channel names.
        mean, std: (C,) over every valid pixel (population std, as the normaliser's).
        quantiles: (C, len(QUANTILES)) percentiles of a uniform sample of at most :data:`SAMPLE_SIZE` pixels.
        count: Valid pixels seen.
    """

    channels: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    quantiles: np.ndarray
    count: int

    def percentile(self, channel: int, q: int) -> float:
        """Channel ``channel``'s percentile ``q`` (one of :data:`QUANTILES`)."""
        return float(self.quantiles[channel, QUANTILES.index(q)])

    def to_dict(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "percentiles": list(QUANTILES), "quantiles": self.quantiles.tolist(), "count": int(self.count)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Distribution":
        """The inverse of :meth:`to_dict`; ValueError when the record is malformed."""
        channels = canonical_all(d["channels"])
        if tuple(d["percentiles"]) != QUANTILES:
            raise ValueError(f"percentiles {d['percentiles']} recorded, expected {list(QUANTILES)}")
        mean, std = np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64)
        quantiles = np.asarray(d["quantiles"], np.float64)
        if mean.shape != (len(channels),) or std.shape != mean.shape or quantiles.shape != (len(channels),
                                                                                              len(QUANTILES)):
            raise ValueError(f"statistics of {len(channels)} channel(s) with shapes {mean.shape}, {std.shape}, "
                             f"{quantiles.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(quantiles).all() and (std >= 0).all()):
            raise ValueError("statistics must be finite and standard deviations non-negative")
        return cls(channels, mean, std, quantiles, int(d["count"]))


def sample_distribution(channels: Sequence[str], pieces: Iterable[tuple[Iterable[np.ndarray], np.ndarray]],
                        size: int = SAMPLE_SIZE, seed: int = 0) -> Distribution | None:
    """The :class:`Distribution` of some pixels, in one pass and bounded memory; None when no pixel is valid.

    Each piece is (one array per channel, their valid mask), as :func:`slidemap.data.tiling.patches.fit_statistics`
    takes them. Mean and std are summed in float64 over every valid pixel. The quantiles come from a bottom-k
    sample: each valid pixel draws a random key and the ``size`` smallest keys are kept, which is a uniform
    sample without replacement whatever the number and size of the pieces (deterministic for a given ``seed``).
    """
    rng = np.random.default_rng(seed)
    c = len(channels)
    total, sq, n = np.zeros(c), np.zeros(c), 0
    keys, kept = np.empty(0), np.empty((c, 0), np.float32)
    for arrays, valid in pieces:
        count = int(valid.sum())
        if count == 0:
            continue
        draw = rng.random(count)
        chosen = np.flatnonzero(draw < keys.max()) if keys.size >= size else np.arange(count)
        values = np.empty((c, chosen.size), np.float32)
        for k, array in enumerate(arrays):
            v = array[valid]
            total[k] += v.sum(dtype=np.float64)
            sq[k] += np.square(v, dtype=np.float64).sum()
            values[k] = v[chosen]
        n += count
        keys, kept = np.concatenate([keys, draw[chosen]]), np.concatenate([kept, values], axis=1)
        if keys.size > size:
            best = np.argpartition(keys, size - 1)[:size]
            keys, kept = keys[best], kept[:, best]
    if n == 0:
        return None
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0.0))
    quantiles = np.percentile(kept.astype(np.float64), QUANTILES, axis=1).T
    return Distribution(tuple(channels), mean, std, quantiles, n)
