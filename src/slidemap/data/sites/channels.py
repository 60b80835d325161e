"""Channel names: bands by their STAC ``eo`` common names, Sentinel-2 band ids as aliases, and derived channels.

A model's inputs are named channels. Bands use the common names of the STAC Electro-Optical extension v2.0.0
("Common Band Names": coastal, blue, green, red, rededge071, nir, swir16, ...), so a PlanetScope ``nir`` and a
Sentinel-2 ``B8`` are the same input; Sentinel-2 band ids stay accepted everywhere as aliases (B2 = blue, ...), so
existing configs, sites and checkpoints that say ``B2`` keep working and mean what they meant. Terrain channels
(``slope``, ``dem``: a DEM or a DSM) and indices (``ndvi``) are computed from a site; ``<band>_pre`` is the same band
of the pre-event image, and ``ndvi_pre``, ``dndvi``, ``rdndvi`` need one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

COMMON_NAMES: tuple[str, ...] = (
    "pan", "coastal", "blue", "green", "green05", "yellow", "red", "rededge", "rededge071", "rededge075",
    "rededge078", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22", "lwir", "lwir11", "lwir12")
"""The STAC eo v2.0.0 common band names (https://github.com/stac-extensions/eo, "Common Band Names")."""

S2_COMMON: dict[str, str] = {
    "B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "rededge071", "B6": "rededge075",
    "B7": "rededge078", "B8": "nir", "B8A": "nir08", "B9": "nir09", "B10": "cirrus", "B11": "swir16", "B12": "swir22"}
"""Sentinel-2 MSI band ids and their common names, by the bands' centre wavelengths (the eo extension's table)."""

COMMON_S2: dict[str, str] = {common: s2 for s2, common in S2_COMMON.items()}
"""The other way round: the Sentinel-2 id of a common name (ingest's spelling, and messages about s2.tif)."""

PAPER_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir")
"""The paper's Sentinel-2 10 m bands B2, B3, B4, B8, in the order s2.tif stores them."""

TERRAIN: tuple[str, ...] = ("slope", "dem")
"""Channels from dem.tif: slope in degrees (Horn, true pixel size) and elevation in metres (a DEM or a DSM)."""

PRE_SUFFIX = "_pre"
PRE_DERIVED: tuple[str, ...] = ("ndvi_pre", "dndvi", "rdndvi")
"""Channels computed from both dates: the pre-event NDVI, the NDVI change and HazMapper's relative change."""

NDVI_BANDS: tuple[str, str] = ("red", "nir")

OPTICAL_UNITS: tuple[str, ...] = ("reflectance", "brightness")
"""What a site's band values are: surface reflectance (0-1), or uncalibrated brightness scaled to 0-1 (8-bit RGB)."""

_S2_ID = re.compile(r"(?<![A-Z0-9])B0*(\d{1,2})(A?)(?![0-9])")


def s2_band_id(text: str) -> str | None:
    """The Sentinel-2 band id in ``text`` ('B02', 'b8', 'B8A', 'T33UUP_B04_10m' -> 'B2', 'B8', 'B8A', 'B4')."""
    m = _S2_ID.search(str(text).strip().upper())
    return f"B{int(m.group(1))}{m.group(2)}" if m else None


def band_common_name(text: str) -> str | None:
    """The common name a band label means: a common name itself (any case) or a Sentinel-2 id; else None."""
    low = str(text).strip().lower()
    if low in COMMON_NAMES:
        return low
    s2 = s2_band_id(text)
    return S2_COMMON.get(s2) if s2 else None


def canonical(name: str) -> str:
    """The canonical spelling of a channel name ('B2' -> 'blue', 'B8_pre' -> 'nir_pre', 'NIR' -> 'nir').

    Raises:
        ValueError: the name is no channel (the message lists what is accepted).
    """
    text = str(name).strip()
    low = text.lower()
    if low in TERRAIN or low == "ndvi" or low in PRE_DERIVED:
        return low
    if low.endswith(PRE_SUFFIX):
        band = band_common_name(text[: -len(PRE_SUFFIX)])
        return band + PRE_SUFFIX if band else _unknown(name)
    band = band_common_name(text)
    return band if band else _unknown(name)


def _unknown(name: str) -> str:
    raise ValueError(f"unknown channel {name!r}: channels are band common names ({', '.join(COMMON_NAMES)}) or "
                     f"Sentinel-2 ids (B2 = blue, B8 = nir, ...), with '{PRE_SUFFIX}' for the pre-event image, "
                     f"and {', '.join(TERRAIN + ('ndvi',) + PRE_DERIVED)}")


def canonical_all(names: Iterable[str]) -> tuple[str, ...]:
    """:func:`canonical` of each name, in order."""
    return tuple(canonical(n) for n in names)


def is_band(channel: str) -> bool:
    """Whether a canonical channel is a band of the post-event image (not terrain, an index or pre-event)."""
    return channel in COMMON_NAMES


def is_pre(channel: str) -> bool:
    """Whether a canonical channel needs the pre-event image."""
    return channel.endswith(PRE_SUFFIX) or channel in PRE_DERIVED


def bands_needed(channel: str) -> tuple[str, ...]:
    """The post-event bands a canonical channel reads (a band itself; NDVI and the change channels red and nir)."""
    if is_band(channel):
        return (channel,)
    if channel.endswith(PRE_SUFFIX):
        return (channel[: -len(PRE_SUFFIX)],)
    if channel == "ndvi" or channel in PRE_DERIVED:
        return NDVI_BANDS
    return ()
