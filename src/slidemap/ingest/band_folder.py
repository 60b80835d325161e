"""Sentinel-2 as a folder of single-band rasters named by band: ``*B02*``, ``*B03*``, ``*B04*``, ``*B08*``, ``*SCL*``.

Such folders come from tools that export bands one file each; they carry no product metadata, so the
conversion to reflectance comes from the files: GDAL scale/offset when set, else integer DNs / 10000
(L2A's quantification) and float values as they are. DN 0 is no-data for integer bands without a nodata value.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import rasterio

from slidemap.data.sites.bands import band_name
from slidemap.data.sites.raster import reading
from slidemap.data.sites.site import BAND_NAMES
from slidemap.errors import InputError
from slidemap.ingest.products import BandFile, Product, band_grid, check_conversion

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
_DATE = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?:T\d{6})?(?!\d)")
_L1C = re.compile(r"(?<![A-Z0-9])L?1C(?![A-Z0-9])|MSIL1C")


def _files(path: Path) -> dict[str, list[Path]]:
    """Raster files of the folder by canonical band name ('B2', ..., 'SCL')."""
    found: dict[str, list[Path]] = {}
    for f in sorted(path.iterdir()):
        if not f.is_file() or f.suffix.lower() not in RASTER_SUFFIXES:
            continue
        name = "SCL" if "SCL" in f.stem.upper() else band_name(f.stem)
        if name in (*BAND_NAMES, "SCL"):
            found.setdefault(name, []).append(f)
    return found


def is_band_folder(path: Path) -> bool:
    """A folder with at least one raster named like a 10 m band."""
    return path.is_dir() and any(n in BAND_NAMES for n in _files(path))


def _conversion(path: Path, f: Path) -> tuple[BandFile, dict[str, object]]:
    """How one file's values become reflectance, and the provenance of that choice."""
    with reading(f), rasterio.open(f) as src:
        if src.count != 1:
            log.warning("%s: %d bands; using band 1", f, src.count)
        scale, offset, nodata, kind = src.scales[0], src.offsets[0], src.nodata, src.dtypes[0]
    integer = kind.startswith(("uint", "int"))
    if scale != 1.0 or offset != 0.0:
        source = "GDAL scale/offset of the file"
    elif integer:
        scale, source = 1e-4, "assumed: integer DNs are reflectance x 10000, offset 0"
    else:
        source = "float values taken as reflectance"
    if nodata is None and integer:
        nodata = 0
    band = BandFile(str(f), add=offset / scale, quantification=1.0 / scale, nodata=nodata)
    check_conversion(path, f.name, band)
    return band, {"file": f.name, "scale": scale, "offset": offset, "nodata": nodata, "source": source}


def open_band_folder(path: Path) -> Product:
    """Pick the B2, B3, B4, B8 (and SCL) files of a folder and how their values become reflectance."""
    files = _files(path)
    for name, hits in files.items():
        if len(hits) > 1:
            raise InputError(path, f"{len(hits)} files for band {name} ({', '.join(h.name for h in hits)}); "
                                   "keep one per band")
    missing = [n for n in BAND_NAMES if n not in files]
    if missing:
        raise InputError(path, f"band folder is missing {', '.join(missing)}: need files named *B02*, *B03*, "
                               "*B04*, *B08* (and *SCL* for the cloud mask)")
    bands, conversions = {}, {}
    for name in BAND_NAMES:
        bands[name], conversions[name] = _conversion(path, files[name][0])
    if any(c["source"].startswith("assumed") for c in conversions.values()):
        log.warning("%s: no scale/offset in the band files; assuming DN / 10000 without offset "
                    "(wrong for processing baseline 04.00 and later, which need -1000)", path)
    scl = BandFile(str(files["SCL"][0])) if "SCL" in files else None
    if scl is None:
        log.warning("%s: no *SCL* file: clouds are not masked", path)
    grid = band_grid(path, bands)
    names = " ".join([path.name, *(f.name for hits in files.values() for f in hits)])
    when = _DATE.search(files[BAND_NAMES[0]][0].name) or _DATE.search(path.name)
    date = f"{when.group(1)}-{when.group(2)}-{when.group(3)}" if when else None
    provenance = {"kind": "band_folder", "path": str(path), "product": path.name,
                  "level": "L1C" if _L1C.search(names.upper()) else "L2A", "date": date, "bands": conversions,
                  "scl": scl and Path(scl.href).name}
    return Product(path=path, kind="band_folder", name=path.name, level=provenance["level"], date=date,
                   bands=bands, scl=scl, grid=grid, provenance=provenance)
