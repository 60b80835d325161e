"""The `slidemap site` command: build a site folder from Sentinel-2 products and DEM tiles."""

from __future__ import annotations

import argparse
import json
from typing import Any

from slidemap.ingest.scl_classes import DEFAULT_MASK_CLASSES, SCL_CLASSES


def format_summary(summary: dict[str, Any]) -> str:
    """A few human-readable lines about the site just written."""
    h, w = summary["shape"]
    lines = [summary["site"],
             f"  grid     {w} x {h} px, {summary['pixel_size'][0]:g} m, {summary['crs']}, lon/lat "
             + ", ".join(f"{v:.5f}" for v in summary["bounds_lonlat"])]
    for p in summary["products"]:
        baseline = p.get("processing_baseline")
        lines.append(f"  s2       {p['product']} ({p['kind']}, {p.get('date') or 'date unknown'}"
                     f"{', baseline ' + str(baseline) if baseline else ''}): {100 * p['share_of_site']:.1f}% of "
                     f"the site, {p['resampling']}")
    pre = summary.get("pre_event")
    used = "the greenest pixel on" if len((pre or {}).get("products", [])) > 1 else "observes"
    for p in (pre or {}).get("products", []):
        lines.append(f"  s2 pre   {p['product']} ({p['kind']}, {p.get('date') or 'date unknown'}): "
                     f"{used} {100 * p['share_of_site']:.1f}% of the site, {p['resampling']}")
    if pre:
        lines.append(f"  before   {pre['composite']}, {100 * pre['coverage_of_valid_site']:.1f}% of the valid "
                     "site observed")
    classes = ", ".join(map(str, summary["mask_classes"])) or "none"
    lines.append(f"  clouds   {100 * summary['masked_share']:.1f}% masked (SCL classes {classes}), "
                 f"{100 * summary['valid_share']:.1f}% valid")
    lines.append(f"  dem      {len(summary['dem']['files'])} file(s), {summary['dem']['crs']}")
    if summary.get("inventory"):
        lines.append(f"  labels   {summary['landslides_in_site']} polygon(s) from {summary['inventory']}")
    return "\n".join(lines)


def site_command(args: argparse.Namespace) -> int:
    from slidemap.ingest.site_builder import build_site

    summary = build_site(args.s2, args.dem, args.out, inventory=args.inventory, bounds=args.bounds,
                         bounds_crs=args.bounds_crs, mask_classes=args.mask_classes, allow_l1c=args.allow_l1c,
                         allow_mixed_dates=args.allow_mixed_dates, s2_pre=args.s2_pre)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def add_product_arguments(p: argparse.ArgumentParser, required: bool) -> None:
    """The options that name Sentinel-2 products and DEM tiles (``slidemap site`` and ``slidemap map``)."""
    classes = ", ".join(f"{k} {v}" for k, v in SCL_CLASSES.items())
    p.add_argument("--s2", nargs="+", required=required, metavar="PRODUCT",
                   help="Sentinel-2 L2A products of one date: .SAFE folder or .zip, STAC item .json, or a folder "
                        "of band rasters (*B02*, *B03*, *B04*, *B08*, *SCL*)")
    p.add_argument("--s2-pre", nargs="+", default=None, metavar="PRODUCT",
                   help="pre-event Sentinel-2 products (same kinds as --s2, any dates before it): written as "
                        "s2_pre.tif on the site's grid; several become a greenest-pixel (maximum NDVI) composite")
    p.add_argument("--dem", nargs="+", required=required, metavar="DEM", help="DEM files (any CRS and resolution)")
    p.add_argument("--bounds", nargs=4, type=float, default=None, metavar=("W", "S", "E", "N"),
                   help="site bounds (default: everything the products cover), snapped outward to the 10 m grid")
    p.add_argument("--bounds-crs", default="EPSG:4326", help="CRS of --bounds (default EPSG:4326, lon/lat)")
    p.add_argument("--mask-classes", nargs="*", default=list(DEFAULT_MASK_CLASSES), metavar="CLASS",
                   help=f"SCL classes that become no-data (default {' '.join(map(str, DEFAULT_MASK_CLASSES))}; "
                        f"none given: no cloud mask). Classes: {classes}")
    p.add_argument("--allow-l1c", action="store_true", help="accept Level-1C (top-of-atmosphere) products")
    p.add_argument("--allow-mixed-dates", action="store_true", help="mosaic products of different dates")


def add_site_parser(sub: Any) -> None:
    """Register ``slidemap site`` on the CLI's subparsers."""
    p = sub.add_parser("site", help="build a site folder from Sentinel-2 products (SAFE, .zip, STAC item, "
                                    "band folder) and DEM tiles",
                       description="Build a site folder (s2.tif, dem.tif, inventory, site.yaml; s2_pre.tif with "
                                   "--s2-pre) from Sentinel-2 L2A products and DEM tiles. The 10 m bands keep the "
                                   "product's own grid.")
    add_product_arguments(p, required=True)
    p.add_argument("--inventory", default=None, help="landslide polygons (GeoJSON, Shapefile, GeoPackage)")
    p.add_argument("--out", required=True, help="the site folder to write (replaced atomically)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=site_command)
