"""Sentinel-2 SAFE products, as a folder or read in place from the ``.zip`` through GDAL's /vsizip/ (never unpacked).

The product metadata (``MTD_MSIL2A.xml``, ESA's Level-2A User Product, or ``MTD_MSIL1C.xml``) gives the
quantification value and, from processing baseline 04.00 on, the per-band offset: reflectance =
(DN + offset) / quantification, DN 0 = no-data. The bands are the JP2 files under ``GRANULE/*/IMG_DATA``.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from xml.etree import ElementTree as ET

from slidemap.errors import InputError
from slidemap.ingest.products import BandFile, Product, band_grid, check_conversion

log = logging.getLogger(__name__)

MTD_FILES = {"MTD_MSIL2A.xml": "L2A", "MTD_MSIL1C.xml": "L1C"}
_BAND_FILES = {"B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08"}
_PATTERNS = {  # where the bands live, relative to the .SAFE folder
    "L2A": ("GRANULE/*/IMG_DATA/R10m/*_{band}_10m.jp2", "GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"),
    "L1C": ("GRANULE/*/IMG_DATA/*_{band}.jp2", None),
}
_ESA_BAND_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
"""band_id 0..12 of the metadata lists, used when the product has no Spectral_Information_List."""

# Element paths from the product root, by local name (the namespace URI changes with each PSD version).
# Level-2A products of the 2017-2018 Sen2Cor format (PSD 14.2) prefix several names with L2A_: the second entries.
_INFO = ("General_Info/Product_Info", "General_Info/L2A_Product_Info")
_CHARS = ("General_Info/Product_Image_Characteristics", "General_Info/L2A_Product_Image_Characteristics")
_QUANT = {"L2A": ("QUANTIFICATION_VALUES_LIST/BOA_QUANTIFICATION_VALUE",
                  "L1C_L2A_Quantification_Values_List/L2A_BOA_QUANTIFICATION_VALUE"),
          "L1C": ("QUANTIFICATION_VALUE",)}
_OFFSETS = {"L2A": "BOA_ADD_OFFSET_VALUES_LIST/BOA_ADD_OFFSET", "L1C": "Radiometric_Offset_List/RADIO_ADD_OFFSET"}
_ROOTS = {"Level-2A_User_Product": "L2A", "Level-1C_User_Product": "L1C"}


@dataclass(frozen=True)
class _Container:
    """A SAFE folder or zip: its member paths (relative to the .SAFE folder), a reader and a GDAL path maker."""

    mtd: str
    members: list[str]
    read: Callable[[str], bytes]
    gdal_path: Callable[[str], str]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(elem: ET.Element | None, path: str) -> ET.Element | None:
    """First element along ``a/b/c`` matching local names (namespace-agnostic), or None."""
    for name in path.split("/"):
        if elem is None:
            return None
        elem = next((child for child in elem if _local(child.tag) == name), None)
    return elem


def _find_all(elem: ET.Element | None, path: str) -> list[ET.Element]:
    head, _, last = path.rpartition("/")
    parent = _find(elem, head) if head else elem
    return [] if parent is None else [c for c in parent if _local(c.tag) == last]


def _first_of(elem: ET.Element | None, paths: tuple[str, ...]) -> ET.Element | None:
    """The element at the first of ``paths`` that exists (current names first, then the 2017-2018 ones)."""
    return next((e for e in (_find(elem, p) for p in paths) if e is not None), None)


def _text(root: ET.Element, name: str) -> str | None:
    found = _first_of(root, tuple(f"{base}/{name}" for base in _INFO))
    return found.text.strip() if found is not None and found.text else None


def is_safe(path: Path) -> bool:
    """A .zip, a ``*.SAFE`` folder, or a folder holding a product metadata file."""
    if path.is_file():
        return path.suffix.lower() == ".zip"
    return path.is_dir() and (path.suffix.upper() == ".SAFE" or any((path / m).is_file() for m in MTD_FILES))


def _open_zip(path: Path) -> _Container:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise InputError(path, f"corrupt zip: {err}") from err
    mtds = sorted((n for n in names if PurePosixPath(n).name in MTD_FILES), key=lambda n: n.count("/"))
    if not mtds:
        raise InputError(path, "not a Sentinel-2 product: the zip holds no MTD_MSIL2A.xml or MTD_MSIL1C.xml")
    prefix = str(PurePosixPath(mtds[0]).parent)
    prefix = "" if prefix == "." else prefix + "/"
    members = [n[len(prefix):] for n in names if n.startswith(prefix) and not n.endswith("/")]

    def read(member: str) -> bytes:
        try:
            with zipfile.ZipFile(path) as z:
                return z.read(prefix + member)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
            raise InputError(path, f"corrupt zip: cannot read {member}: {err}") from err

    base = f"/vsizip/{path.resolve()}/{prefix}"
    return _Container(PurePosixPath(mtds[0]).name, members, read, lambda m: base + m)


def _open_folder(path: Path) -> _Container:
    mtd = next((m for m in MTD_FILES if (path / m).is_file()), None)
    if mtd is None:
        raise InputError(path, "not a Sentinel-2 product: no MTD_MSIL2A.xml or MTD_MSIL1C.xml in the folder")
    members = [p.relative_to(path).as_posix() for p in (path / "GRANULE").rglob("*") if p.is_file()]

    def read(member: str) -> bytes:
        try:
            return (path / member).read_bytes()
        except OSError as err:
            raise InputError(path / member, f"cannot read: {err.strerror or err}") from err

    return _Container(mtd, members, read, lambda m: str(path / m))


def _match(path: Path, members: list[str], pattern: str, what: str) -> str:
    hits = sorted(m for m in members if PurePosixPath(m).match(pattern))
    if not hits:
        raise InputError(path, f"product is missing {what}: no file matches {pattern}")
    if len(hits) > 1:
        raise InputError(path, f"{len(hits)} files match {pattern} ({', '.join(hits[:3])}); "
                               "multi-granule products are not supported")
    return hits[0]


def _number(path: Path, elem: ET.Element | None, what: str) -> float:
    try:
        return float(elem.text)  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError, ValueError) as err:
        raise InputError(path, f"{what} is missing or not a number") from err


def parse_metadata(path: Path, xml: bytes, mtd: str) -> dict[str, Any]:
    """The parts of the product metadata that matter: level, type, baseline, date, quantification, offsets.

    Offsets are per physical band name ({'B2': -1000.0, ...}); empty when the product has no offset list
    (processing baseline before 04.00), which means offset 0.
    """
    where = path / mtd
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise InputError(where, f"malformed XML: {err}") from err
    level = _ROOTS.get(_local(root.tag))
    if level is None:
        raise InputError(where, f"not a Sentinel-2 product metadata file: root element is {_local(root.tag)}, "
                                f"expected {' or '.join(_ROOTS)}")
    chars = _first_of(root, _CHARS)
    quant = _first_of(chars, _QUANT[level])
    spectral = _find_all(chars, "Spectral_Information_List/Spectral_Information")
    ids = {e.get("bandId"): e.get("physicalBand") for e in spectral}
    offsets: dict[str, float] = {}
    for elem in _find_all(chars, _OFFSETS[level]):
        band_id = elem.get("band_id")
        name = ids.get(band_id) or (_ESA_BAND_IDS[int(band_id)] if band_id and band_id.isdigit()
                                    and int(band_id) < len(_ESA_BAND_IDS) else None)
        if name is not None:
            offsets[name] = _number(where, elem, f"{_local(elem.tag)} band_id={band_id}")
    start = _text(root, "PRODUCT_START_TIME")
    return {
        "level": level,
        "product_type": _text(root, "PRODUCT_TYPE"),
        "processing_baseline": _text(root, "PROCESSING_BASELINE"),
        "start_time": start,
        "date": start[:10] if start else None,
        "spacecraft": _text(root, "Datatake/SPACECRAFT_NAME"),
        "product_uri": _text(root, "PRODUCT_URI"),
        "quantification": _number(where, quant, _QUANT[level][0].rpartition("/")[2]),
        "offsets": offsets,
    }


def open_safe(path: Path) -> Product:
    """Locate the 10 m bands and the SCL of a SAFE product and read how to turn its DNs into reflectance."""
    box = _open_zip(path) if path.is_file() else _open_folder(path)
    meta = parse_metadata(path, box.read(box.mtd), box.mtd)
    level = meta["level"]
    if level == "L2A" and meta["product_type"] and not meta["product_type"].startswith("S2MSI2A"):
        raise InputError(path, f"{box.mtd} says PRODUCT_TYPE {meta['product_type']}, expected S2MSI2A")
    band_pattern, scl_pattern = _PATTERNS[level]
    baseline = meta["processing_baseline"]
    if not meta["offsets"] and baseline and baseline >= "04.00":
        log.warning("%s: processing baseline %s but no offset list in %s; using offset 0", path, baseline, box.mtd)
    bands: dict[str, BandFile] = {}
    for name, file_band in _BAND_FILES.items():
        member = _match(path, box.members, band_pattern.format(band=file_band), f"band {file_band}")
        bands[name] = BandFile(box.gdal_path(member), add=meta["offsets"].get(name, 0.0),
                               quantification=meta["quantification"], nodata=0)
        check_conversion(path, name, bands[name])
    scl = None
    if scl_pattern is not None:
        scl = BandFile(box.gdal_path(_match(path, box.members, scl_pattern, "the scene classification (SCL)")))
    grid = band_grid(path, bands)
    name = meta["product_uri"] or (path.stem if path.is_file() else path.name)
    provenance = {
        "kind": "safe", "path": str(path), "product": name.removesuffix(".zip"), "level": level,
        "product_type": meta["product_type"], "spacecraft": meta["spacecraft"], "start_time": meta["start_time"],
        "processing_baseline": baseline, "quantification": meta["quantification"],
        "offsets": {b: meta["offsets"].get(b, 0.0) for b in _BAND_FILES},
        "files": {b: PurePosixPath(bands[b].href).name for b in _BAND_FILES}
                 | ({"SCL": PurePosixPath(scl.href).name} if scl else {}),
    }
    return Product(path=path, kind="safe", name=provenance["product"], level=level, date=meta["date"],
                   bands=bands, scl=scl, grid=grid, provenance=provenance)
