"""Build a site folder (the site contract, docs/data.md) from what providers ship: S2 products, DEM tiles, inventory.

Everything is read and checked before anything is written; the folder is then written under a temporary
name and renamed at the end, so bad input leaves nothing behind and a reader never sees half a site.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from slidemap.data.sites.grid import LONLAT, footprint
from slidemap.data.sites.labels import read_inventory
from slidemap.errors import InputError
from slidemap.ingest.composite import open_pre_products, pre_event_composite
from slidemap.ingest.dem_tiles import mosaic_dem
from slidemap.ingest.mosaic import mosaic_products, plan_grid
from slidemap.ingest.products import Product
from slidemap.ingest.scl import DEFAULT_MASK_CLASSES, describe_classes, parse_mask_classes
from slidemap.ingest.site_files import (check_inventory, copy_inventory, plain, write_float_cog, write_s2,
                                        write_site_yaml)
from slidemap.ingest.sources import open_product
from slidemap.io import atomic_dir, check_replaceable

log = logging.getLogger(__name__)

PathArg = str | PathLike[str]


def _paths(value: PathArg | Iterable[PathArg], what: str) -> list[Path]:
    items = [value] if isinstance(value, str | PathLike) else list(value)
    if not items:
        raise InputError(what, "needs at least one path")
    return [Path(p) for p in items]


def _check_out(out: Path) -> None:
    """Refuse to replace anything but an earlier site: the folder is swapped wholesale at the end."""
    if out.is_file():
        raise InputError(out, "exists and is a file; --out must be a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "s2.tif").is_file():
        raise InputError(out, "exists and is not a site folder (no s2.tif); refusing to replace it")
    check_replaceable(out, ("s2.tif", "s2_pre.tif", "s2.qml", "s2_pre.qml", "dem.tif", "site.yaml", "inventory.*"),
                      "slidemap site")


def _check_dates(products: Sequence[Product], allow_mixed: bool) -> None:
    """Products of different dates are two scenes, not one: refuse unless asked to mosaic them anyway."""
    dated = [p for p in products if p.date]
    for p in dated[1:]:
        if p.date != dated[0].date and not allow_mixed:
            raise InputError(p.path, f"acquired {p.date}, but {dated[0].name} was acquired {dated[0].date}: "
                                     "products of different dates mix two scenes; pass --allow-mixed-dates "
                                     "to mosaic them anyway")


def _pre_text(products: Sequence[Product]) -> str:
    """', before: <names> (<dates>)' for the site description; '' without pre-event products."""
    if not products:
        return ""
    dates = sorted({p.date for p in products if p.date})
    return (f", before: {', '.join(p.name for p in products)}{' (' + ', '.join(dates) + ')' if dates else ''}"
            f"{' as a greenest-pixel composite' if len(products) > 1 else ''}")


def build_site(s2: PathArg | Iterable[PathArg], dem: PathArg | Iterable[PathArg], out: PathArg,
               inventory: PathArg | None = None, bounds: Sequence[float] | None = None,
               bounds_crs: Any = "EPSG:4326", mask_classes: Iterable[int | str] | None = DEFAULT_MASK_CLASSES,
               allow_l1c: bool = False, allow_mixed_dates: bool = False,
               s2_pre: PathArg | Iterable[PathArg] | None = None) -> dict[str, Any]:
    """Write a site folder from Sentinel-2 products and DEM tiles; returns the summary ``slidemap site --json`` prints.

    Args:
        s2: one or more products (SAFE folder or .zip, STAC item .json, band folder) of one date.
        dem: one or more DEM files, any CRS and resolution; together they must cover the site.
        out: the site folder (replaced atomically if it is an earlier site).
        inventory: landslide polygons (GeoJSON, Shapefile, GeoPackage) copied as ``inventory.*``.
        bounds: W S E N in ``bounds_crs`` (default lon/lat); default: everything the products cover.
        mask_classes: SCL classes that become no-data (default 0, 1, 3, 8, 9, 10; empty masks nothing).
        allow_l1c: accept Level-1C (top-of-atmosphere) products.
        allow_mixed_dates: mosaic products of different dates.
        s2_pre: pre-event products (any dates before the post-event one, any grid): brought onto the site's grid
            and, if several, merged into a greenest-pixel composite, written as ``s2_pre.tif``.

    Raises:
        InputError: any bad input, naming the file and the problem; nothing is written then.
    """
    start = time.perf_counter()
    out = Path(out)
    s2_paths, dem_paths = _paths(s2, "--s2"), _paths(dem, "--dem")
    pre_paths = _paths(s2_pre, "--s2-pre") if s2_pre is not None else []
    classes = parse_mask_classes(mask_classes)
    inventory_path = check_inventory(Path(inventory)) if inventory is not None else None
    _check_out(out)

    products = [open_product(p, allow_l1c=allow_l1c) for p in s2_paths]
    _check_dates(products, allow_mixed_dates)
    pre_products = open_pre_products(pre_paths, products, allow_l1c)
    plan = plan_grid(products, bounds, bounds_crs)
    scene, product_summaries = mosaic_products(plan, classes)
    timings = {"s2": time.perf_counter() - start}
    grid = scene.grid
    if not scene.valid.any():
        raise InputError(products[0].path, f"no valid pixel in the site: {scene.provenance['masked_share']:.1%} "
                                           f"cloud-masked (SCL classes {list(classes)}), the rest no-data")
    pre = pre_event_composite(pre_products, grid, classes, scene.valid) if pre_products else None
    timings["s2_pre"] = time.perf_counter() - start - timings["s2"]
    dem_mosaic = mosaic_dem(dem_paths, grid)
    labels = read_inventory(inventory_path, grid, {})[1] if inventory_path else None
    timings["dem_inventory"] = time.perf_counter() - start - timings["s2"] - timings["s2_pre"]

    lonlat = footprint(grid.bounds, grid.crs, LONLAT).bounds
    summary: dict[str, Any] = {
        "site": str(out), "name": out.name, "crs": grid.crs.to_string(), "shape": list(grid.shape),
        "pixel_size": [grid.transform.a, -grid.transform.e], "transform": list(grid.transform)[:6],
        "bounds": list(grid.bounds), "bounds_lonlat": list(lonlat), "clipped_to_products": plan.clipped,
        "products": product_summaries, "mask_classes": list(classes),
        "mask_class_names": describe_classes(classes),
        "masked_share": scene.provenance["masked_share"], "valid_share": scene.provenance["valid_share"],
        "dem": dem_mosaic.provenance, "inventory": str(inventory_path) if inventory_path else None,
        "landslides_in_site": labels, "pre_event": pre[2] if pre is not None else None,
    }
    names = ", ".join(p.name for p in products)
    dates = sorted({p.date for p in products if p.date})
    description = (f"Sentinel-2 {'/'.join(sorted({p.level for p in products}))} {names}"
                   f"{' (' + ', '.join(dates) + ')' if dates else ''}{_pre_text(pre_products)} with DEM "
                   f"{', '.join(Path(f).name for f in dem_mosaic.provenance['files'])}; built by slidemap site")
    with atomic_dir(out) as tmp:
        write_s2(tmp / "s2.tif", scene.bands, grid)
        files = ["s2.tif"]
        if pre is not None:
            write_s2(tmp / "s2_pre.tif", pre[0], grid)
            files.append("s2_pre.tif")
        write_float_cog(tmp / "dem.tif", dem_mosaic.data, dem_mosaic.grid, ("elevation",))
        files.append("dem.tif")
        if inventory_path is not None:
            files.append(copy_inventory(inventory_path, tmp).name)
        summary["files"] = [*files, "site.yaml"]
        write_site_yaml(tmp / "site.yaml", description, {k: v for k, v in summary.items() if k not in ("site", "name")})
    summary["seconds"] = round(time.perf_counter() - start, 3)
    timings["write"] = summary["seconds"] - sum(timings.values())
    summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
    log.info("site %s: %d x %d px in %s, %.1f%% valid, %.1f%% cloud-masked, written in %.1f s", out,
             grid.shape[1], grid.shape[0], summary["crs"], 100 * summary["valid_share"],
             100 * summary["masked_share"], summary["seconds"])
    return plain(summary)
