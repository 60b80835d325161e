"""Read a site folder (DESIGN section 2) into a Site: everything comes onto the s2 grid, bad input is an InputError."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyogrio.errors
import rasterio
import shapely
import yaml
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.exceptions import CRSError as ProjCRSError
from pyproj.exceptions import ProjError
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.features import rasterize
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds
from scipy import ndimage

from slidemap.data.site import BAND_NAMES, Site
from slidemap.data.terrain import horn_slope, pixel_size_m
from slidemap.errors import InputError

log = logging.getLogger(__name__)

INVENTORY_SUFFIXES = (".geojson", ".json", ".shp", ".gpkg")
_OPEN_ERRORS = (RasterioError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, ProjError,
                ProjCRSError, OSError)
_COMMON_NAMES = {"BLUE": "B2", "GREEN": "B3", "RED": "B4", "NIR": "B8"}
_BAND_RE = re.compile(r"(?<![A-Z0-9])B0*(\d{1,2})(A?)(?![0-9])")

PathLikeStr = str | PathLike[str]


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a library error while reading ``path`` into a one-line InputError naming it."""
    try:
        yield
    except _OPEN_ERRORS as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].replace(f"'{path}'", "file")
        raise InputError(path, f"cannot read: {first[:200]}") from err


def band_name(text: str) -> str | None:
    """Canonical Sentinel-2 band name in ``text`` ('B02', 'b8', 'B8A', 'nir' -> 'B2', 'B8', 'B8A', 'B8')."""
    up = str(text).strip().upper()
    if up in _COMMON_NAMES:
        return _COMMON_NAMES[up]
    m = _BAND_RE.search(up)
    return f"B{int(m.group(1))}{m.group(2)}" if m else None


def _fmt_bounds(b: Sequence[float], crs: Any) -> str:
    """Bounds for a message: enough digits for degrees and for UTM metres alike."""
    return "(" + ", ".join(f"{v:.10g}" for v in b) + f") [{crs.to_string() if hasattr(crs, 'to_string') else crs}]"


def _disjoint(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def load_meta(folder: Path) -> dict[str, Any]:
    """``site.yaml`` as a dict ({} when absent); the keys read here are checked, ``split`` is checked by split.py."""
    path = folder / "site.yaml"
    if not path.exists():
        return {}
    try:
        meta = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(path, f"malformed YAML: {' '.join(str(err).split())[:200]}") from err
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from err
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise InputError(path, f"must be a mapping (bands, scale, offset, split, ...), got {type(meta).__name__}")
    bands = meta.get("bands")
    if bands is not None and (not isinstance(bands, list) or not all(isinstance(b, str) for b in bands)):
        raise InputError(path, "'bands' must be a list of band names such as [B2, B3, B4, B8]")
    for key in ("scale", "offset", "pre_scale", "pre_offset"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InputError(path, f"'{key}' must be a number, got {value!r}")
    return meta


def _valid_mask(src: Any, index: int, data: np.ndarray, window: Window | None = None) -> np.ndarray:
    """Valid pixels of one band: not nodata and finite; GDAL mask bands (alpha, internal masks) honoured."""
    flags = src.mask_flag_enums[index - 1]
    if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
        return src.read_masks(index, window=window) > 0
    valid = np.isfinite(data) if data.dtype.kind == "f" else np.ones(data.shape, bool)
    nodata = src.nodatavals[index - 1]
    if nodata is not None and not math.isnan(nodata):
        valid &= data != nodata
    return valid


def _band_indexes(path: Path, src: Any, meta: dict[str, Any]) -> list[int]:
    """1-based indexes of B2, B3, B4, B8: from site.yaml 'bands', else band descriptions, else bands 1-4."""
    if meta.get("bands"):
        names, source = [band_name(b) or str(b).strip().upper() for b in meta["bands"]], "site.yaml 'bands'"
        if len(names) > src.count:
            raise InputError(path, f"site.yaml 'bands' names {len(names)} bands but the file has {src.count}")
    else:
        names, source = [band_name(d) if d else None for d in src.descriptions], "band descriptions"
        if not any(n in BAND_NAMES for n in names):
            log.debug("%s: band descriptions do not name bands; assuming bands 1-4 are %s", path, BAND_NAMES)
            return [1, 2, 3, 4]
    missing = [b for b in BAND_NAMES if b not in names]
    if missing:
        listed = ", ".join(n or "?" for n in names)
        raise InputError(path, f"band {', '.join(missing)} not found; the {source} give [{listed}]")
    return [names.index(b) + 1 for b in BAND_NAMES]


def read_s2(path: Path, meta: dict[str, Any],
            window: Window | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Reflectance (4, H, W) float32, valid mask and the grid profile (crs, transform, shape) of s2.tif.

    With ``window`` only those pixels are read (the grid still describes the whole file).
    """
    if not path.is_file():
        raise InputError(path, "missing: every site needs s2.tif (Sentinel-2 bands B2, B3, B4, B8)")
    with _reading(path), rasterio.open(path) as src:
        if src.crs is None:
            raise InputError(path, "has no CRS; every input must be georeferenced")
        if src.count < 4:
            raise InputError(path, f"has {src.count} band(s); need at least 4 (B2, B3, B4, B8)")
        idx = _band_indexes(path, src, meta)
        dn = src.read(idx, window=window)
        valid = np.logical_and.reduce([_valid_mask(src, i, dn[k], window) for k, i in enumerate(idx)])
        grid = {"crs": src.crs, "transform": src.transform, "shape": (src.height, src.width), "bounds": src.bounds,
                "band_indexes": idx, "count": src.count}  # how s2_pre.tif finds the same bands (pre_event.py)
    default_scale = 1.0 if dn.dtype.kind == "f" else 1e-4  # integer DNs are L2A's reflectance * 10000
    scale = float(default_scale if meta.get("scale") is None else meta["scale"])
    offset = float(meta.get("offset") or 0.0)
    bands = dn.astype(np.float32)
    if scale != 1.0:
        bands *= np.float32(scale)
    if offset != 0.0:
        bands += np.float32(offset)
    return bands, valid, grid


def _shifted(t: Affine, window: Window) -> Affine:
    """Transform of a window's upper-left pixel (spelled out: affine 3 deprecates ``*`` on tuples)."""
    col, row = window.col_off, window.row_off
    return Affine(t.a, t.b, t.c + t.a * col + t.b * row, t.d, t.e, t.f + t.d * col + t.e * row)


def _s2_bounds_in(grid: dict[str, Any], crs: Any) -> tuple[float, ...] | None:
    """The s2 footprint in another CRS (a small area, so this is well behaved); None if it cannot be had."""
    try:
        b = transform_bounds(grid["crs"], crs, *grid["bounds"], densify_pts=21)
    except Exception:  # noqa: BLE001 - callers fall back to reading everything
        return None
    return b if all(map(math.isfinite, b)) and b[0] <= b[2] else None  # left > right: antimeridian, give up


def _covering_window(src: Any, footprint: Sequence[float] | None) -> Window | None:
    """The window of ``src`` covering the s2 footprint plus a margin (a DEM mosaic or a pre-event tile can be far
    larger than a site)."""
    if footprint is None:
        return None
    try:
        w = from_bounds(*footprint, transform=src.transform)
    except Exception:  # noqa: BLE001 - e.g. a rotated DEM grid: read it whole
        return None
    win = Window(math.floor(w.col_off) - 2, math.floor(w.row_off) - 2, math.ceil(w.width) + 5, math.ceil(w.height) + 5)
    return win.intersection(Window(0, 0, src.width, src.height))


def read_dem(path: Path, grid: dict[str, Any]) -> np.ndarray:
    """dem.tif bilinearly resampled onto the s2 grid; NaN where the DEM is nodata or does not reach."""
    if not path.is_file():
        raise InputError(path, "missing: every site needs dem.tif (elevation, any CRS and resolution)")
    with _reading(path), rasterio.open(path) as src:
        if src.crs is None:
            raise InputError(path, "has no CRS; every input must be georeferenced")
        footprint = _s2_bounds_in(grid, src.crs)
        own = (min(src.bounds[0], src.bounds[2]), min(src.bounds[1], src.bounds[3]),
               max(src.bounds[0], src.bounds[2]), max(src.bounds[1], src.bounds[3]))
        if footprint is not None and _disjoint(footprint, own):
            raise InputError(path, f"does not overlap s2.tif: DEM bounds {_fmt_bounds(own, src.crs)} vs s2.tif bounds "
                                   f"{_fmt_bounds(footprint, src.crs)} = {_fmt_bounds(grid['bounds'], grid['crs'])}")
        window = _covering_window(src, footprint)
        raw = src.read(1, window=window)
        data = raw.astype(np.float32)
        data[~_valid_mask(src, 1, raw, window)] = np.nan
        src_transform = src.transform if window is None else _shifted(src.transform, window)
        dem = np.full(grid["shape"], np.nan, np.float32)
        # XSCALE/YSCALE=1: plain 4-neighbour bilinear. Left alone, GDAL widens the kernel when the DEM is finer
        # than the s2 grid, and its asymmetric sampling then tilts planes by up to ~0.5 degrees.
        reproject(data, dem, src_transform=src_transform, src_crs=src.crs, src_nodata=np.nan,
                  dst_transform=grid["transform"], dst_crs=grid["crs"], dst_nodata=np.nan,
                  resampling=Resampling.bilinear, XSCALE=1, YSCALE=1)
    missing = float(np.isnan(dem).mean())
    if missing >= 1.0:
        raise InputError(path, f"has no elevation over s2.tif (bounds {_fmt_bounds(grid['bounds'], grid['crs'])})")
    if missing > 0:
        log.warning("%s: no elevation for %.1f%% of the s2.tif pixels (outside coverage or nodata); "
                    "they are marked invalid", path, 100 * missing)
    return dem


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep only polygonal parts (as Polygon/MultiPolygon, or None when nothing polygonal is left)."""
    out = np.empty(len(geoms), dtype=object)
    for k, g in enumerate(geoms):
        if g is None or g.is_empty:
            out[k] = None
        elif g.geom_type in ("Polygon", "MultiPolygon"):
            out[k] = g
        else:
            parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
            polys = [q for p in parts for q in shapely.get_parts(p)]
            out[k] = shapely.MultiPolygon(polys) if polys else None
    return out


def read_inventory(path: Path, grid: dict[str, Any], meta: dict[str, Any]) -> tuple[np.ndarray, int]:
    """Landslide polygons in any CRS -> uint8 mask on the s2 grid (pixel centres inside) and feature count."""
    with _reading(path):
        layers = pyogrio.list_layers(path)
        layer = None
        if len(layers) > 1:
            polygon_layers = [str(n) for n, t in layers if t and "POLYGON" in str(t).upper()]
            layer = polygon_layers[0] if polygon_layers else str(layers[0][0])
            log.warning("%s: %d layers; using '%s'", path, len(layers), layer)
        info, _, wkb, _ = pyogrio.raw.read(path, layer=layer, columns=[], force_2d=True)
    if len(wkb) == 0:
        raise InputError(path, "empty inventory: no features")
    src_crs = info.get("crs")
    if src_crs is None:
        if path.suffix.lower() in (".geojson", ".json"):
            src_crs = "EPSG:4326"  # RFC 7946: GeoJSON coordinates are WGS84 longitude/latitude
        elif path.suffix.lower() == ".shp":
            raise InputError(path, f"has no CRS: {path.with_suffix('.prj').name} is missing")
        else:
            raise InputError(path, "has no CRS")
    geoms = _polygonal(shapely.from_wkb(wkb))
    skipped = int(sum(g is None for g in geoms))
    if skipped:
        log.warning("%s: skipped %d feature(s) without polygon geometry", path, skipped)
        meta["skipped_features"] = skipped
    geoms = geoms[[g is not None for g in geoms]]
    if len(geoms) == 0:
        raise InputError(path, f"empty inventory: none of the {len(wkb)} features is a polygon")
    own_bounds = shapely.total_bounds(geoms)
    with _reading(path):
        dst = ProjCRS.from_user_input(grid["crs"].to_wkt())
        src = ProjCRS.from_user_input(src_crs)
        if not src.equals(dst):
            tr = Transformer.from_crs(src, dst, always_xy=True)
            geoms = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        repaired = _polygonal(shapely.make_valid(geoms[invalid]))
        geoms[invalid] = repaired
        log.warning("%s: repaired %d invalid polygon(s) (e.g. self-intersections)", path, int(invalid.sum()))
        meta["repaired_polygons"] = int(invalid.sum())
        geoms = geoms[[g is not None for g in geoms]]
    footprint = shapely.box(*grid["bounds"])
    hits = geoms[shapely.intersects(geoms, footprint)]
    if len(hits) == 0:
        raise InputError(path, f"no landslide polygon intersects s2.tif: inventory bounds "
                               f"{_fmt_bounds(own_bounds, src.to_string())} = "
                               f"{_fmt_bounds(shapely.total_bounds(geoms), grid['crs'])} vs s2.tif bounds "
                               f"{_fmt_bounds(grid['bounds'], grid['crs'])}")
    label = rasterize(((g, 1) for g in hits), out_shape=grid["shape"], transform=grid["transform"],
                      fill=0, all_touched=False, dtype=np.uint8)
    return label, len(hits)


def read_mask(path: Path, grid: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """A ready 0/1 mask.tif on exactly the s2 grid -> (label, valid, connected-component count)."""
    with _reading(path), rasterio.open(path) as src:
        t, g = src.transform, grid["transform"]
        tol = 1e-3 * min(abs(g.a), abs(g.e))
        same_crs = src.crs is not None and (src.crs == grid["crs"] or src.crs.to_epsg() == grid["crs"].to_epsg() is not None)
        same = (same_crs and (src.height, src.width) == grid["shape"]
                and all(abs(u - v) <= tol for u, v in zip(t[:6], g[:6], strict=True)))
        if not same:
            raise InputError(path, f"must be on the s2.tif grid: got shape {(src.height, src.width)}, "
                                   f"transform {tuple(t)[:6]}, CRS {src.crs}; s2.tif has shape {grid['shape']}, "
                                   f"transform {tuple(g)[:6]}, CRS {grid['crs']}")
        data = src.read(1)
        valid = _valid_mask(src, 1, data)
    bad = valid & (data != 0) & (data != 1)
    if bad.any():
        values = ", ".join(f"{v:g}" for v in np.unique(data[bad])[:5])
        raise InputError(path, f"values must be 0, 1 or nodata; found {values}")
    label = (valid & (data == 1)).astype(np.uint8)
    _, count = ndimage.label(label, structure=np.ones((3, 3), dtype=bool))
    return label, valid, int(count)


def _find_inventory(folder: Path) -> Path | None:
    found = sorted(p for p in folder.glob("inventory.*") if p.suffix.lower() in INVENTORY_SUFFIXES)
    if len(found) > 1:
        raise InputError(folder, f"several inventories ({', '.join(p.name for p in found)}); keep exactly one")
    return found[0] if found else None


def _read_pre(folder: Path, meta: dict[str, Any], grid: dict[str, Any],
              s2_valid: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The optional s2_pre.tif on the s2 grid and its valid mask (None, None without one); coverage checked."""
    from slidemap.data.pre_event import PRE_FILE, check_coverage, read_pre_event  # it builds on this module

    path = folder / PRE_FILE
    if not path.is_file():
        return None, None
    bands_pre, pre_valid = read_pre_event(path, meta, grid)
    meta["pre_event_coverage"] = check_coverage(path, pre_valid, s2_valid)
    return bands_pre, pre_valid


def read_site(folder: PathLikeStr, require_label: bool = True) -> Site:
    """Read one site folder onto its s2 grid.

    An optional pre-event image ``s2_pre.tif`` (same bands, any grid) comes onto the s2 grid too
    (:mod:`slidemap.data.pre_event`); its no-data joins the valid mask.

    Args:
        folder: the site folder (its name is the site name).
        require_label: demand ``inventory.*`` or ``mask.tif``; False for scenes that are only mapped.

    Raises:
        InputError: any missing, unreadable or inconsistent input, naming the file and the problem.
    """
    start = time.perf_counter()
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "site folder not found")
    meta = load_meta(folder)
    meta["path"] = str(folder)
    inventory, mask_path = _find_inventory(folder), folder / "mask.tif"
    if inventory is None and not mask_path.exists() and require_label:  # fail before the slow reads
        raise InputError(folder, "no inventory.* or mask.tif: the site has no landslide labels")
    bands, valid, grid = read_s2(folder / "s2.tif", meta)
    bands_pre, pre_valid = _read_pre(folder, meta, grid, valid)
    dem = read_dem(folder / "dem.tif", grid)
    dx, dy = pixel_size_m(grid["crs"], grid["transform"], grid["shape"], path=str(folder / "s2.tif"))
    slope = horn_slope(dem, dx, dy)
    valid &= np.isfinite(dem) & np.isfinite(slope)
    if pre_valid is not None:  # one valid mask for every input set, so post and change models score the same pixels
        valid &= pre_valid

    label: np.ndarray | None = None
    count: int | None = None
    if inventory is not None:
        if mask_path.exists():
            log.warning("%s: both %s and mask.tif present; using %s", folder, inventory.name, inventory.name)
        label, count = read_inventory(inventory, grid, meta)
        meta["label_source"] = inventory.name
    elif mask_path.exists():
        label, mask_valid, count = read_mask(mask_path, grid)
        valid &= mask_valid
        meta["label_source"] = mask_path.name

    if not valid.any():
        raise InputError(folder, "no pixel is valid in every input (s2.tif nodata, dem.tif coverage, mask nodata)")
    invalid = ~valid
    bands[:, invalid] = 0.0
    if bands_pre is not None:
        bands_pre[:, invalid] = 0.0
    dem[invalid] = 0.0
    slope[invalid] = 0.0
    if label is not None:
        label[invalid] = 0
    site = Site(name=folder.name, bands=bands, dem=dem, slope=slope, label=label, valid=valid,
                transform=grid["transform"], crs=grid["crs"], landslide_count=count, meta=meta, bands_pre=bands_pre)
    log.info("read site %s (%d x %d px, %.1f%% valid) in %.2f s", site.name, *site.shape,
             100 * float(valid.mean()), time.perf_counter() - start)
    return site


def list_sites(root: PathLikeStr) -> list[str]:
    """Sorted names of the subfolders of ``root`` that hold an ``s2.tif``."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "sites folder not found")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "s2.tif").is_file())


def read_sites(root: PathLikeStr, names: Sequence[str] | None = None, require_label: bool = True) -> dict[str, Site]:
    """Read several sites under ``root`` (all when ``names`` is None), keyed by name in the order asked."""
    known = list_sites(root)
    if not known:
        raise InputError(root, "no sites: no subfolder holds an s2.tif")
    wanted = list(known if names is None else names)
    for name in wanted:
        if name not in known:
            raise InputError(root, f"unknown site '{name}'; known sites: {', '.join(known)}")
    return {name: read_site(Path(root) / name, require_label=require_label) for name in wanted}
