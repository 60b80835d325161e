"""Which band of an image file is which: s2.tif's B2, B3, B4, B8, any sensor's image.tif, and the pre-event image.

Names come from site.yaml ``bands``, else the GeoTIFF band descriptions, else (image.tif) the colour
interpretation of an RGB(A) file; bands are named by their STAC eo common names (:mod:`slidemap.data.sites.channels`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slidemap.data.sites.channels import COMMON_S2, PAPER_BANDS, band_common_name, s2_band_id
from slidemap.errors import InputError

log = logging.getLogger(__name__)

S2_FILE, IMAGE_FILE = "s2.tif", "image.tif"
"""A site's image: Sentinel-2 (the paper's four bands) or any sensor's bands, named."""
PRE_FILES = {S2_FILE: "s2_pre.tif", IMAGE_FILE: "image_pre.tif"}
"""The pre-event image that goes with each kind of image (the same bands, any grid)."""
_COLOUR_BANDS = ("red", "green", "blue")


@dataclass(frozen=True)
class ImageBands:
    """What an image file holds: where each named band is (1-based), their common names, and the band count.

    A pre-event image without band names is read like the site's image, so these travel to its reader.
    """

    indexes: tuple[int, ...]
    count: int
    names: tuple[str, ...] = PAPER_BANDS


def band_name(text: str) -> str | None:
    """The Sentinel-2 band id in ``text`` ('B02', 'b8', 'B8A', 'nir' -> 'B2', 'B8', 'B8A', 'B8'): ingest's spelling."""
    common = band_common_name(text)
    return COMMON_S2.get(common) if common else s2_band_id(text)


def _label(name: str) -> str:
    """A band for messages: 'blue (B2)' where Sentinel-2 has it, else the common name."""
    s2 = COMMON_S2.get(name)
    return f"{name} ({s2})" if s2 else name


def _described(src: Any) -> list[str | None]:
    """The common names a file's band descriptions give (None where a description names no band)."""
    return [band_common_name(d) if d else None for d in src.descriptions]


def _indexes_of(path: Path, names: Sequence[str | None], wanted: Sequence[str], found_in: str,
                also: str = "") -> list[int]:
    """1-based positions of ``wanted`` in ``names``; refused, listing ``names``, when one is missing."""
    missing = [_label(b) for b in wanted if b not in names]
    if missing:
        listed = ", ".join(_label(n) if n else "?" for n in names)
        raise InputError(path, f"band {', '.join(missing)} not found{found_in.format(listed=listed)}{also}")
    return [names.index(b) + 1 for b in wanted]


def _site_yaml_names(path: Path, src: Any, meta: dict[str, Any]) -> list[str]:
    """site.yaml ``bands`` as common names; refused when a name is no band or there are more names than bands."""
    names = []
    for raw in meta["bands"]:
        name = band_common_name(raw)
        if name is None:
            raise InputError(path, f"site.yaml 'bands' names {raw!r}, which is no band: use common names (blue, "
                                   "green, red, nir, swir16, ...) or Sentinel-2 ids (B2, B8, ...)")
        names.append(name)
    if len(names) > src.count:
        raise InputError(path, f"site.yaml 'bands' names {len(names)} bands but the file has {src.count}")
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise InputError(path, f"site.yaml 'bands' names {', '.join(doubled)} twice")
    return names


def s2_band_indexes(path: Path, src: Any, meta: dict[str, Any]) -> ImageBands:
    """B2, B3, B4, B8 (blue, green, red, nir) in s2.tif: from site.yaml 'bands', else band descriptions, else
    bands 1-4."""
    if meta.get("bands"):
        names, source = _site_yaml_names(path, src, meta), "site.yaml 'bands'"
    else:
        names, source = _described(src), "band descriptions"
        if not any(n in PAPER_BANDS for n in names):
            log.debug("%s: band descriptions do not name bands; assuming bands 1-4 are B2, B3, B4, B8", path)
            return ImageBands((1, 2, 3, 4), src.count)
    return ImageBands(tuple(_indexes_of(path, names, PAPER_BANDS, f"; the {source} give [{{listed}}]")), src.count)


def image_band_indexes(path: Path, src: Any, meta: dict[str, Any]) -> ImageBands:
    """Every named band of an image.tif of any sensor: from site.yaml 'bands', else the band descriptions, else
    the colour interpretation (red, green, blue; an alpha band is the validity mask, not an input).

    Raises:
        InputError: nothing says which band is which, or a name appears twice.
    """
    if meta.get("bands"):
        names: list[str | None] = list(_site_yaml_names(path, src, meta))
    else:
        names = _described(src)
        if not any(names):
            names = [c.name if c.name in _COLOUR_BANDS else None for c in src.colorinterp]
    named = [(i + 1, n) for i, n in enumerate(names) if n]
    if not named:
        raise InputError(path, f"cannot tell which of its {src.count} band(s) is which: name them in site.yaml "
                               "'bands' (e.g. [red, green, blue, nir]) or in the band descriptions")
    doubled = sorted({n for _, n in named if [m for _, m in named].count(n) > 1})
    if doubled:
        raise InputError(path, f"band {', '.join(doubled)} appears twice in the band descriptions")
    return ImageBands(tuple(i for i, _ in named), src.count, tuple(n for _, n in named))


def pre_band_indexes(path: Path, src: Any, held: ImageBands) -> list[int]:
    """1-based indexes of the site image's bands in its pre-event image: by its band descriptions, else as in the
    site's image.

    Bands without names can only be matched to the site image's when both files hold the same number of bands;
    anything else is a different band set and refused.
    """
    names = _described(src)
    if any(n in held.names for n in names):
        return _indexes_of(path, names, held.names, " (its band descriptions give [{listed}])",
                           f"; pre- and post-event images must both hold {', '.join(map(_label, held.names))}")
    if src.count != held.count:
        raise InputError(path, f"{src.count} unnamed band(s) but the site's image has {held.count}: pre- and "
                               f"post-event images must hold the same bands; name them "
                               f"({', '.join(map(_label, held.names))}) in the band descriptions")
    return list(held.indexes)
