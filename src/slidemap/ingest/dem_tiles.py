"""DEM tiles in any CRS and resolution -> one DEM mosaic over a site plus a margin; a gap is an error, never a hole.

The mosaic keeps the first covering tile's CRS and pixel grid (the site reader resamples it onto the s2 grid
anyway): tiles on that grid are copied as they are by ``rasterio.merge`` (adjacent 1 x 1 degree tiles join
without a seam), tiles in another CRS or grid come through a bilinear ``WarpedVRT`` onto the same grid.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.merge import merge
from rasterio.vrt import WarpedVRT

from slidemap.data.sites.grid import LONLAT, Grid, footprint, lonlat_text
from slidemap.data.sites.raster import reading
from slidemap.errors import InputError

log = logging.getLogger(__name__)

MARGIN_PX = 8
"""DEM pixels kept around the site, so resampling and slope at the site's edge use real neighbours."""
_GAP_TOLERANCE = 1e-6  # uncovered share of the site below which a difference is floating-point noise


@dataclass(frozen=True)
class DemMosaic:
    """The DEM over a site: float32 elevation (NaN = no data) on the tiles' grid, and where it came from."""

    data: np.ndarray
    grid: Grid
    provenance: dict[str, Any]


def _label(paths: Sequence[Path]) -> str:
    names = [str(p) for p in paths]
    more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def _open_tiles(paths: Sequence[Path], stack: ExitStack) -> list[Any]:
    """Open every tile (kept open by ``stack``), checking it is a georeferenced north-up raster."""
    tiles = []
    for path in paths:
        if not path.exists():
            raise InputError(path, "not found")
        with reading(path):
            src = stack.enter_context(rasterio.open(path))
        if src.crs is None:
            raise InputError(path, "has no CRS; every DEM tile must be georeferenced")
        if not src.transform.is_rectilinear or src.transform.a <= 0 or src.transform.e >= 0:
            raise InputError(path, "is not on a north-up grid")
        tiles.append(src)
    return tiles


def mosaic_dem(paths: Sequence[str | PathLike[str]], site: Grid, margin_px: int = MARGIN_PX) -> DemMosaic:
    """Mosaic the DEM tiles that meet ``site`` and crop them to it plus ``margin_px`` DEM pixels.

    Raises:
        InputError: a tile that cannot be read or has no CRS; any part of the site the tiles do not cover,
            named in longitude/latitude.
    """
    paths = [Path(p) for p in paths]
    label = _label(paths)
    with ExitStack() as stack:
        tiles = _open_tiles(paths, stack)
        # Tested in each tile's own CRS: the site is small there, a global tile may not be in the site's CRS.
        used = [k for k, s in enumerate(tiles)
                if footprint(site.bounds, site.crs, s.crs).intersects(shapely.box(*s.bounds))]
        if not used:
            covered = shapely.union_all([footprint(s.bounds, s.crs, LONLAT) for s in tiles])
            raise InputError(label, f"DEM tiles do not cover the site: the site is "
                                    f"{lonlat_text(footprint(site.bounds, site.crs, LONLAT), LONLAT)}, the tiles "
                                    f"{lonlat_text(covered, LONLAT)}")
        first = tiles[used[0]]
        lattice = Grid.of(first)
        site_poly = footprint(site.bounds, site.crs, lattice.crs)
        union = shapely.union_all([footprint(tiles[k].bounds, tiles[k].crs, lattice.crs) for k in used])
        gap = site_poly.difference(union)
        if gap.area > _GAP_TOLERANCE * site_poly.area:
            raise InputError(label, f"DEM tiles do not cover {lonlat_text(gap, lattice.crs)} of the site "
                                    f"({gap.area / site_poly.area:.1%} of its area; site "
                                    f"{lonlat_text(site_poly, lattice.crs)})")
        margin = margin_px * max(lattice.transform.a, -lattice.transform.e)
        want = shapely.box(*site_poly.bounds).buffer(margin, join_style="mitre").intersection(
            shapely.box(*union.bounds))
        target = lattice.window_grid(lattice.cover(want.bounds))
        sources, resampled = [], []
        for k in used:
            src = tiles[k]
            if lattice.offset_of(Grid.of(src)) is None:
                src = stack.enter_context(WarpedVRT(src, crs=lattice.crs, transform=target.transform,
                                                    width=target.shape[1], height=target.shape[0],
                                                    resampling=Resampling.bilinear, src_nodata=src.nodata,
                                                    nodata=np.nan, dtype="float32"))
                resampled.append(str(paths[k]))
            sources.append(src)
        with reading(Path(label)), warnings.catch_warnings():
            # rasterio 1.4's merge still multiplies affine transforms with '*', which affine 3 flags as pending removal
            warnings.filterwarnings("ignore", message="Use `@` matmul", category=PendingDeprecationWarning)
            data, out_t = merge(sources, bounds=target.bounds, res=(target.transform.a, -target.transform.e),
                                nodata=np.nan, dtype="float32", indexes=[1], resampling=Resampling.bilinear)
    grid = Grid(lattice.crs, out_t, data.shape[1:])
    dem = data[0]
    w = grid.cover(site_poly.bounds)
    over_site = dem[max(w.row_off, 0):w.row_off + w.height, max(w.col_off, 0):w.col_off + w.width]
    voids = float(np.isnan(over_site).mean()) if over_site.size else 0.0
    provenance = {
        "files": [str(paths[k]) for k in used],
        "unused": [str(p) for k, p in enumerate(paths) if k not in used],
        "resampled_bilinear": resampled, "crs": lattice.crs.to_string(),
        "resolution": [lattice.transform.a, -lattice.transform.e], "margin_px": margin_px,
        "shape": list(grid.shape), "void_share": voids,
    }
    if voids > 0:
        log.warning("DEM mosaic: %.2f%% of the pixels over the site are no-data (voids in the tiles); "
                    "the site reader marks them invalid", 100 * voids)
    if provenance["unused"]:
        log.info("DEM: %d tile(s) do not reach the site and are not used", len(provenance["unused"]))
    return DemMosaic(dem, grid, provenance)
