"""A region as jobs: one per Sentinel-2 product footprint, each mapped as ``slidemap map`` maps a product.

Products that share a footprint (the same tile of the same date and orbit, split or reprocessed) go into one job,
which ``slidemap map`` mosaics as it does today; products with another footprint are other jobs. Opening a product
reads its metadata and grid only, so planning dozens of tiles takes seconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pyproj import Transformer
from rasterio.crs import CRS

from slidemap.errors import InputError
from slidemap.ingest.sources import open_product

TILE = re.compile(r"_T(\d{2}[A-Z]{3})(?:_|$)")
"""The MGRS tile id in a product name (``..._R011_T18QXG_...``)."""


@dataclass(frozen=True)
class Footprint:
    """Where a job's products lie: their CRS and bounds (west, south, east, north) in it, and its centre in lon/lat."""

    crs: str
    bounds: tuple[float, float, float, float]

    @property
    def centre_lonlat(self) -> tuple[float, float]:
        x, y = (self.bounds[0] + self.bounds[2]) / 2, (self.bounds[1] + self.bounds[3]) / 2
        lon, lat = Transformer.from_crs(CRS.from_user_input(self.crs), "EPSG:4326", always_xy=True).transform(x, y)
        return float(lon), float(lat)

    def area(self) -> float:
        return (self.bounds[2] - self.bounds[0]) * (self.bounds[3] - self.bounds[1])


@dataclass(frozen=True)
class Job:
    """One job of a region: its name (the tile, or the product), its products and their footprint."""

    name: str
    s2: tuple[str, ...]
    footprint: Footprint
    date: str | None


def job_name(product_name: str, taken: set[str]) -> str:
    """``T18QXG`` from a product named by its tile, else the product's name; made unique among ``taken``."""
    m = TILE.search(product_name)
    base = f"T{m.group(1)}" if m else re.sub(r"[^A-Za-z0-9._-]+", "_", product_name)[:80] or "job"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def plan_jobs(s2: Sequence[str], allow_l1c: bool = False) -> list[Job]:
    """Group the products by footprint (CRS + bounds) and date: one job each, in the order the products came.

    Raises:
        InputError: a product that cannot be opened (the reader's one-line error), or no product at all.
    """
    if not s2:
        raise InputError("--s2", "no Sentinel-2 product given")
    groups: dict[tuple[str, tuple[float, ...]], list[tuple[str, str, str | None]]] = {}
    for path in s2:
        product = open_product(path, allow_l1c=allow_l1c)
        grid = product.grid
        key = (grid.crs.to_string(), tuple(round(v, 3) for v in grid.bounds))
        groups.setdefault(key, []).append((str(path), product.name, product.date))
    jobs, taken = [], set()
    for (crs, bounds), members in groups.items():
        name = job_name(members[0][1], taken)
        taken.add(name)
        dates = sorted({d for _, _, d in members if d})
        jobs.append(Job(name, tuple(p for p, _, _ in members), Footprint(crs, tuple(bounds)),  # type: ignore[arg-type]
                        ",".join(dates) or None))
    return jobs
