"""Sentinel-2 L2A as a STAC item: a local JSON file whose assets (band COGs) are found by common or band name.

Assets are matched by ``eo:bands``/``bands`` (common_name blue, green, red, nir; name B02 ...) or by their key;
``raster:bands`` scale and offset give reflectance = DN * scale + offset and its nodata the invalid value.
Hrefs are local paths (relative to the item file) or anything GDAL opens (http(s) through /vsicurl/, s3:// ...).
"""

from __future__ import annotations

import json
import re
import logging
from pathlib import Path
from typing import Any

from slidemap.data.sites.bands import band_name
from slidemap.data.sites.site import BAND_NAMES
from slidemap.errors import InputError
from slidemap.ingest.products import BandFile, Product, band_grid, check_conversion

log = logging.getLogger(__name__)

_SCHEMES = {"http://": "/vsicurl/http://", "https://": "/vsicurl/https://", "s3://": "/vsis3/", "gs://": "/vsigs/"}
_L1C = re.compile(r"(?<![A-Z0-9])L?1C(?![A-Z0-9])|MSIL1C|S2MSI1C")
_NOT_DATA = {"thumbnail", "overview", "visual", "metadata"}


def is_stac(path: Path) -> bool:
    """A JSON file (the item itself is checked when it is opened)."""
    return path.is_file() and path.suffix.lower() in (".json", ".geojson")


def _href(item_path: Path, href: str) -> str:
    """An asset href as a path GDAL opens: relative paths resolve against the item's folder."""
    for scheme, prefix in _SCHEMES.items():
        if href.startswith(scheme):
            return prefix + href[len(scheme):]
    if href.startswith("file://"):
        href = href[len("file://"):]
    if href.startswith("/vsi") or Path(href).is_absolute():
        return href
    return str((item_path.parent / href).resolve())


def _band_entries(asset: dict[str, Any]) -> list[dict[str, Any]]:
    """The asset's band descriptions: STAC 1.1 ``bands`` or the eo extension's ``eo:bands``."""
    entries = asset.get("bands") or asset.get("eo:bands") or []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _names(key: str, asset: dict[str, Any]) -> set[str]:
    """Canonical band names an asset may hold ('B2', ..., 'SCL'), from its band entries or its key."""
    entries = _band_entries(asset)
    if len(entries) > 1:
        return set()  # a multi-band asset (e.g. the true-colour 'visual') is not one band
    texts = [key] + [str(e.get(k, "")) for e in entries for k in ("common_name", "eo:common_name", "name")]
    found = {n for n in (band_name(t) for t in texts if t) if n}
    if any(t.strip().upper().split("-")[0] == "SCL" for t in texts if t):
        found = {"SCL"}
    return found


def _rank(key: str, asset: dict[str, Any]) -> tuple[int, int]:
    """Prefer GeoTIFF/COG over JPEG 2000 copies of the same band, then a key that is the band's own name."""
    media = str(asset.get("type", "")).lower()
    return (0 if "tiff" in media or str(asset.get("href", "")).lower().endswith((".tif", ".tiff")) else 1,
            0 if "-" not in key else 1)


def _scaling(asset: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(scale, offset, nodata) from ``raster:bands`` (STAC 1.0) or ``bands``/asset fields (STAC 1.1)."""
    raster = asset.get("raster:bands") or _band_entries(asset) or [{}]
    first = raster[0] if isinstance(raster, list) and raster and isinstance(raster[0], dict) else {}

    def pick(*keys: str) -> float | None:
        for source in (first, asset):
            for k in keys:
                if isinstance(source.get(k), int | float) and not isinstance(source.get(k), bool):
                    return float(source[k])
        return None

    return pick("scale", "raster:scale"), pick("offset", "raster:offset"), pick("nodata")


def _level(item: dict[str, Any], props: dict[str, Any]) -> str:
    """'L1C' when the item says so (product type, processing level, product name, id or collection), else 'L2A'."""
    text = " ".join(str(v) for v in (item.get("id"), props.get("s2:product_type"), props.get("processing:level"),
                                     props.get("s2:product_uri"), item.get("collection")) if v)
    return "L1C" if _L1C.search(text.upper()) else "L2A"


def open_stac(path: Path) -> Product:
    """Find the blue, green, red, nir and scl assets of a STAC item and how their DNs become reflectance."""
    try:
        item = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not a STAC item: cannot read JSON ({err})") from err
    if not isinstance(item, dict) or item.get("type") != "Feature" or not isinstance(item.get("assets"), dict):
        raise InputError(path, "not a Sentinel-2 product: a STAC item is a JSON 'Feature' with 'assets'")
    props = item.get("properties", {}) if isinstance(item.get("properties"), dict) else {}
    chosen: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, asset in item["assets"].items():
        if not isinstance(asset, dict) or "href" not in asset or _NOT_DATA & set(asset.get("roles") or []):
            continue
        for name in _names(key, asset) & {*BAND_NAMES, "SCL"}:
            if name not in chosen or _rank(key, asset) < _rank(*chosen[name]):
                chosen[name] = (key, asset)
    missing = [n for n in (*BAND_NAMES, "SCL") if n not in chosen]
    if missing:
        raise InputError(path, f"STAC item has no asset for {', '.join(missing)} (looked for common names "
                               f"blue/green/red/nir, band names B02/B03/B04/B08 and key scl; assets: "
                               f"{', '.join(item['assets'])})")
    baseline = props.get("s2:processing_baseline")
    bands: dict[str, BandFile] = {}
    conversions: dict[str, dict[str, Any]] = {}
    for name in BAND_NAMES:
        key, asset = chosen[name]
        scale, offset, nodata = _scaling(asset)
        if scale is None and offset is None:
            # No raster:bands: L2A DNs are reflectance * 10000, shifted by -1000 from baseline 04.00 on.
            scale, offset = 1e-4, (-0.1 if baseline and str(baseline) >= "04.00" else 0.0)
            log.warning("%s: asset %s has no raster:bands scale/offset; assuming scale %g, offset %g "
                        "(s2:processing_baseline %s)", path, key, scale, offset, baseline)
        scale = 1.0 if scale is None else scale
        offset = 0.0 if offset is None else offset
        if scale == 0:
            raise InputError(path, f"asset {key}: raster:bands scale is 0")
        bands[name] = BandFile(_href(path, str(asset["href"])), add=offset / scale, quantification=1.0 / scale,
                               nodata=nodata)
        check_conversion(path, name, bands[name])
        conversions[name] = {"asset": key, "scale": scale, "offset": offset, "nodata": nodata}
    scl_key, scl_asset = chosen["SCL"]
    scl = BandFile(_href(path, str(scl_asset["href"])))
    grid = band_grid(path, bands)
    when = props.get("datetime") or props.get("start_datetime")
    name = str(props.get("s2:product_uri") or item.get("id") or path.stem)
    provenance = {
        "kind": "stac", "path": str(path), "product": name, "item_id": item.get("id"),
        "collection": item.get("collection"), "level": _level(item, props), "processing_baseline": baseline,
        "datetime": when, "bands": conversions, "scl_asset": scl_key,
    }
    return Product(path=path, kind="stac", name=name, level=provenance["level"],
                   date=str(when)[:10] if when else None, bands=bands, scl=scl, grid=grid, provenance=provenance)
