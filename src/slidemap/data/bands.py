"""Which bands of a file are B2, B3, B4, B8: band names, s2.tif's band order and s2_pre.tif's, matched to it."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slidemap.data.site import BAND_NAMES
from slidemap.errors import InputError

log = logging.getLogger(__name__)

_COMMON_NAMES = {"BLUE": "B2", "GREEN": "B3", "RED": "B4", "NIR": "B8"}
_BAND_RE = re.compile(r"(?<![A-Z0-9])B0*(\d{1,2})(A?)(?![0-9])")


@dataclass(frozen=True)
class S2Bands:
    """What s2.tif holds: where B2, B3, B4, B8 are (1-based) and how many bands in all.

    A pre-event image without band names is read like s2.tif, so these travel to its reader (not grid facts).
    """

    indexes: tuple[int, ...]
    count: int


def band_name(text: str) -> str | None:
    """Canonical Sentinel-2 band name in ``text`` ('B02', 'b8', 'B8A', 'nir' -> 'B2', 'B8', 'B8A', 'B8')."""
    up = str(text).strip().upper()
    if up in _COMMON_NAMES:
        return _COMMON_NAMES[up]
    m = _BAND_RE.search(up)
    return f"B{int(m.group(1))}{m.group(2)}" if m else None


def _described(src: Any) -> list[str | None]:
    """The band names a file's band descriptions give (None where a description names no band)."""
    return [band_name(d) if d else None for d in src.descriptions]


def _indexes_of(path: Path, names: Sequence[str | None], found_in: str, also: str = "") -> list[int]:
    """1-based positions of B2, B3, B4, B8 in ``names``; refused, listing ``names``, when one is missing."""
    missing = [b for b in BAND_NAMES if b not in names]
    if missing:
        listed = ", ".join(n or "?" for n in names)
        raise InputError(path, f"band {', '.join(missing)} not found{found_in.format(listed=listed)}{also}")
    return [names.index(b) + 1 for b in BAND_NAMES]


def s2_band_indexes(path: Path, src: Any, meta: dict[str, Any]) -> S2Bands:
    """B2, B3, B4, B8 in s2.tif: from site.yaml 'bands', else band descriptions, else bands 1-4."""
    if meta.get("bands"):
        names, source = [band_name(b) or str(b).strip().upper() for b in meta["bands"]], "site.yaml 'bands'"
        if len(names) > src.count:
            raise InputError(path, f"site.yaml 'bands' names {len(names)} bands but the file has {src.count}")
    else:
        names, source = _described(src), "band descriptions"
        if not any(n in BAND_NAMES for n in names):
            log.debug("%s: band descriptions do not name bands; assuming bands 1-4 are %s", path, BAND_NAMES)
            return S2Bands((1, 2, 3, 4), src.count)
    return S2Bands(tuple(_indexes_of(path, names, f"; the {source} give [{{listed}}]")), src.count)


def pre_band_indexes(path: Path, src: Any, s2: S2Bands) -> list[int]:
    """1-based indexes of B2, B3, B4, B8 in s2_pre.tif: by its band descriptions, else as in s2.tif.

    Bands without names can only be matched to s2.tif's when both files hold the same number of bands;
    anything else is a different band set and refused.
    """
    names = _described(src)
    if any(n in BAND_NAMES for n in names):
        return _indexes_of(path, names, " (its band descriptions give [{listed}])",
                           f"; pre- and post-event images must both hold {', '.join(BAND_NAMES)}")
    if src.count != s2.count:
        raise InputError(path, f"{src.count} unnamed band(s) but s2.tif has {s2.count}: pre- and post-event "
                               f"images must hold the same bands; name them ({', '.join(BAND_NAMES)}) in the band "
                               "descriptions")
    return list(s2.indexes)
