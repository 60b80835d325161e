"""One or more Sentinel-2 products onto one site grid: the lead product's own 10 m grid, never resampled.

The lead product is the one covering most of the requested bounds; the site grid is those bounds snapped
outward onto its pixel lattice. Products on the same lattice (adjacent tiles of one UTM zone) are copied
window by window; a product in another CRS (the next UTM zone) is reprojected onto the grid, bilinearly for
reflectance and by nearest neighbour for its cloud mask. Where products overlap, the lead product wins, then
the others in order of coverage.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj.exceptions import CRSError
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError as RasterioCRSError
from rasterio.warp import reproject
from rasterio.windows import Window

from slidemap.data.sites.grid import LONLAT, Grid, fmt_bounds, footprint, lonlat_bounds
from slidemap.data.sites.site import BAND_NAMES
from slidemap.errors import InputError
from slidemap.ingest.products import Product, Reflectance, read_window

log = logging.getLogger(__name__)

REPROJECTION = "bilinear"
"""How a product in another CRS comes onto the site grid (its cloud mask: nearest)."""


@dataclass(frozen=True)
class Plan:
    """The site grid and the order in which products fill it (lead product first)."""

    grid: Grid
    order: list[Product]
    coverage: dict[str, float]
    clipped: bool


def _bounds_crs(bounds_crs: Any) -> CRS:
    try:
        return CRS.from_user_input(bounds_crs)
    except (CRSError, RasterioCRSError, ValueError, TypeError) as err:
        raise InputError("--bounds-crs", f"not a CRS: {bounds_crs!r} ({err})") from err


def plan_grid(products: Sequence[Product], bounds: Sequence[float] | None, bounds_crs: Any = LONLAT) -> Plan:
    """Choose the lead product and the site grid on its lattice: ``bounds`` (default: all products) snapped outward.

    Raises:
        InputError: malformed bounds, or bounds that lie outside every product (their bounds are printed).
    """
    if bounds is None:
        req_crs = LONLAT
        area = shapely.union_all([footprint(p.grid.bounds, p.grid.crs, LONLAT) for p in products])
        req_bounds = tuple(area.bounds)
    else:
        req_crs = _bounds_crs(bounds_crs)
        req_bounds = tuple(float(v) for v in bounds)
        if len(req_bounds) != 4 or not all(map(math.isfinite, req_bounds)) or not (
                req_bounds[0] < req_bounds[2] and req_bounds[1] < req_bounds[3]):
            raise InputError("--bounds", f"need W S E N with W < E and S < N, got {list(bounds)}")
    coverage = {}
    for p in products:
        wanted = footprint(req_bounds, req_crs, p.grid.crs)
        coverage[p.name] = wanted.intersection(shapely.box(*p.grid.bounds)).area / wanted.area if wanted.area else 0.0
    order = sorted(products, key=lambda p: -coverage[p.name])
    lead = order[0]
    if coverage[lead.name] <= 0:
        where = "; ".join(f"{p.name}: {fmt_bounds(lonlat_bounds(shapely.box(*p.grid.bounds), p.grid.crs), LONLAT)} "
                          f"= {fmt_bounds(p.grid.bounds, p.grid.crs)}" for p in products)
        raise InputError(products[0].path if len(products) == 1 else "--bounds",
                         f"bounds {fmt_bounds(req_bounds, req_crs)} lie outside the product"
                         f"{'' if len(products) == 1 else 's'}: {where}")
    wanted = footprint(req_bounds, req_crs, lead.grid.crs)
    extent = shapely.union_all([footprint(p.grid.bounds, p.grid.crs, lead.grid.crs) for p in products])
    clipped_area = wanted.intersection(shapely.box(*extent.bounds))
    window = lead.grid.cover(clipped_area.bounds)
    grid = lead.grid.window_grid(window)
    clipped = bounds is not None and clipped_area.area < wanted.area * (1 - 1e-9)
    if clipped:
        log.warning("bounds reach beyond the product(s); the site is clipped to %s", fmt_bounds(grid.bounds, grid.crs))
    return Plan(grid=grid, order=order, coverage=coverage, clipped=clipped)


def _native(product: Product, grid: Grid,
            mask_classes: Sequence[int]) -> tuple[Reflectance, tuple[slice, slice]] | None:
    """Read a product on the site's lattice: its window under the site, and where that lands in the site."""
    offset = product.grid.offset_of(grid)
    if offset is None:
        return None
    col, row = offset
    h, w = grid.shape
    ph, pw = product.grid.shape
    c0, r0, c1, r1 = max(col, 0), max(row, 0), min(col + w, pw), min(row + h, ph)
    if c1 <= c0 or r1 <= r0:
        return None
    refl = read_window(product, Window(c0, r0, c1 - c0, r1 - r0), mask_classes)
    return refl, (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))


def _reprojected(product: Product, grid: Grid, mask_classes: Sequence[int]) -> Reflectance | None:
    """Read the part of a product under the site (plus 2 pixels) and reproject it onto the site grid."""
    under = footprint(grid.bounds, grid.crs, product.grid.crs).intersection(shapely.box(*product.grid.bounds))
    if under.is_empty:
        return None
    ph, pw = product.grid.shape
    cover = product.grid.cover(under.bounds)
    c0, r0 = max(cover.col_off - 2, 0), max(cover.row_off - 2, 0)
    c1, r1 = min(cover.col_off + cover.width + 2, pw), min(cover.row_off + cover.height + 2, ph)
    src = read_window(product, Window(c0, r0, c1 - c0, r1 - r0), mask_classes)
    common = dict(src_transform=src.grid.transform, src_crs=src.grid.crs, dst_transform=grid.transform,
                  dst_crs=grid.crs)
    bands = np.full((len(BAND_NAMES), *grid.shape), np.nan, np.float32)
    for k in range(len(BAND_NAMES)):
        reproject(src.bands[k], bands[k], src_nodata=np.nan, dst_nodata=np.nan,
                  resampling=getattr(Resampling, REPROJECTION), **common)
    masked = np.zeros(grid.shape, np.uint8)
    reproject(src.masked.astype(np.uint8), masked, src_nodata=None, dst_nodata=0, resampling=Resampling.nearest,
              **common)
    valid = np.isfinite(bands).all(axis=0)
    bands[:, ~valid] = np.nan
    return Reflectance(bands=bands, valid=valid, masked=masked.astype(bool) & ~valid, grid=grid,
                       provenance=src.provenance)


def product_on_grid(product: Product, grid: Grid, mask_classes: Sequence[int]) -> tuple[Reflectance, str]:
    """One whole product on a site grid (NaN and invalid where it does not reach), and how it came there.

    A product on the grid's lattice is copied window by window; one on another grid or in another CRS is
    reprojected (bilinear; its cloud mask by nearest neighbour), exactly as :func:`mosaic_products` does.
    """
    native = _native(product, grid, mask_classes)
    if native is None:
        part = _reprojected(product, grid, mask_classes)
        how = f"reprojected from {product.grid.crs.to_string()}: {REPROJECTION} (cloud mask: nearest)"
        if part is not None:
            return part, how
        empty = np.zeros(grid.shape, bool)
        return Reflectance(bands=np.full((len(BAND_NAMES), *grid.shape), np.nan, np.float32), valid=empty,
                           masked=empty.copy(), grid=grid, provenance={"valid_share": 0.0, "masked_share": 0.0}), how
    part, where = native
    if part.bands.shape[1:] == grid.shape:
        return part, "native grid (no resampling)"
    bands = np.full((len(BAND_NAMES), *grid.shape), np.nan, np.float32)
    valid = np.zeros(grid.shape, bool)
    masked = np.zeros(grid.shape, bool)
    bands[(slice(None), *where)] = part.bands
    valid[where] = part.valid
    masked[where] = part.masked
    return Reflectance(bands=bands, valid=valid, masked=masked, grid=grid, provenance=part.provenance), \
        "native grid (no resampling)"


def mosaic_products(plan: Plan, mask_classes: Sequence[int]) -> tuple[Reflectance, list[dict[str, Any]]]:
    """Fill the site grid from the products in plan order; returns the mosaic and one summary per product."""
    grid = plan.grid
    bands = np.full((len(BAND_NAMES), *grid.shape), np.nan, np.float32)
    valid = np.zeros(grid.shape, bool)
    masked = np.zeros(grid.shape, bool)
    summaries = []
    for product in plan.order:
        native = _native(product, grid, mask_classes)
        if native is not None:
            part, where = native
            how = "native grid (no resampling)"
        else:
            part = _reprojected(product, grid, mask_classes)
            where = (slice(None), slice(None))
            how = f"reprojected from {product.grid.crs.to_string()}: {REPROJECTION} (cloud mask: nearest)"
        contributed = 0
        if part is not None and part.bands.shape[1:] == grid.shape and not valid.any():
            bands, valid, masked = part.bands, part.valid, part.masked  # the first product fills the grid: no copy
            contributed = int(valid.sum())
        elif part is not None:
            take = part.valid & ~valid[where]
            contributed = int(take.sum())
            bands[(slice(None), *where)][:, take] = part.bands[:, take]
            valid[where] |= take
            masked[where] |= part.masked
        summaries.append({**product.provenance, "date": product.date, "resampling": how,
                          "coverage_of_bounds": round(plan.coverage[product.name], 6),
                          "share_of_site": contributed / valid.size})
        log.info("%s: %s, %.1f%% of the site", product.name, how, 100 * contributed / valid.size)
    masked &= ~valid
    provenance = {"valid_share": float(valid.mean()), "masked_share": float(masked.mean())}
    return Reflectance(bands=bands, valid=valid, masked=masked, grid=grid, provenance=provenance), summaries
