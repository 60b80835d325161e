"""The pre-event image of a site: pre-event products on the site's grid, merged into a greenest-pixel composite.

One pre-event scene is rarely cloud-free over a whole site. Several are: per pixel, the observation with the
highest NDVI is kept (a greenest-pixel composite, Earth Engine's ``qualityMosaic('NDVI')`` as HazMapper uses it).
Clouds, shadows and haze lower NDVI, so they lose to a clear view of the vegetation the event may remove.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slidemap.data.sites.grid import Grid
from slidemap.data.sites.indices import ndvi
from slidemap.data.sites.pre_event import MIN_COVERAGE
from slidemap.errors import InputError
from slidemap.ingest.mosaic import product_on_grid
from slidemap.ingest.products import Product
from slidemap.ingest.sources import open_product

log = logging.getLogger(__name__)


def greenest_pixel(observations: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel, the bands of the valid observation with the highest NDVI.

    Args:
        observations: (bands, valid) pairs on one grid: reflectance (4, H, W) B2, B3, B4, B8 and a bool (H, W)
            mask. Consumed one at a time, so memory holds the composite and one observation, never all of them.

    Returns:
        bands (4, H, W) float32 (NaN where no observation is valid), valid (H, W), and the index of the winning
        observation per pixel (int16, -1 where none is valid). Invalid observations never win; on equal NDVI the
        earlier observation is kept, so the result does not depend on floating-point noise in the order.
    """
    best: np.ndarray | None = None
    for k, (bands, valid) in enumerate(observations):
        if best is None:
            best = np.full(bands.shape, np.nan, np.float32)
            best_ndvi = np.full(valid.shape, -np.inf, np.float32)
            winner = np.full(valid.shape, -1, np.int16)
        if bands.shape != best.shape or valid.shape != best_ndvi.shape:
            raise ValueError(f"observation {k} has shape {bands.shape}, the first {best.shape}: not one grid")
        score = ndvi(bands[2], bands[3])
        take = valid & np.isfinite(bands).all(axis=0) & (score > best_ndvi)
        best[:, take] = bands[:, take]
        best_ndvi[take] = score[take]
        winner[take] = k
    if best is None:
        raise ValueError("greenest_pixel needs at least one observation")
    return best, winner >= 0, winner


def open_pre_products(paths: Sequence[Path], post: Sequence[Product], allow_l1c: bool) -> list[Product]:
    """Open the pre-event products and refuse one acquired on or after the post-event products' first date."""
    products = [open_product(p, allow_l1c=allow_l1c) for p in paths]
    post_dates = sorted((p.date, p.name) for p in post if p.date)
    for product in products:
        if not product.date or not post_dates:
            log.warning("%s: acquisition date unknown; cannot check that it precedes the post-event image",
                        product.name)
            continue
        first, name = post_dates[0]
        if product.date >= first:
            raise InputError(product.path, f"acquired {product.date}, not before the post-event image {name} "
                                           f"({first}): a pre-event product must predate the event")
    return products


def pre_event_composite(products: Sequence[Product], grid: Grid, mask_classes: Sequence[int],
                        site_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The pre-event products on the site grid as one image (greenest pixel where there are several).

    Returns the bands (4, H, W) float32 (NaN where no product has a valid view), their valid mask and a summary
    for site.yaml.

    Raises:
        InputError: the composite observes less than ``MIN_COVERAGE`` of the site's valid (post-event) pixels.
    """
    summaries: list[dict[str, Any]] = []

    def observations() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        for product in products:
            refl, how = product_on_grid(product, grid, mask_classes)
            summaries.append({**product.provenance, "date": product.date, "resampling": how,
                              "valid_share": float(refl.valid.mean()), "masked_share": float(refl.masked.mean())})
            log.info("pre-event %s: %s, %.1f%% of the site valid", product.name, how, 100 * refl.valid.mean())
            yield refl.bands, refl.valid

    bands, valid, winner = greenest_pixel(observations())
    for k, summary in enumerate(summaries):
        summary["share_of_site"] = float((winner == k).mean())
    usable = int(site_valid.sum())
    coverage = float((valid & site_valid).sum()) / usable if usable else 0.0
    if coverage < MIN_COVERAGE:
        where = products[0].path if len(products) == 1 else "--s2-pre"
        raise InputError(where, f"the pre-event image covers only {coverage:.1%} of the site's valid pixels (the rest "
                                f"lies outside the product{'s' if len(products) > 1 else ''}, or is no-data or cloud "
                                f"there); need at least {MIN_COVERAGE:.0%}: add pre-event products (their "
                                "greenest-pixel composite fills clouds)")
    summary = {"products": summaries,
               "composite": "greenest pixel (maximum NDVI)" if len(products) > 1 else "single product",
               "valid_share": float(valid.mean()), "coverage_of_valid_site": coverage}
    return bands, valid, summary
