"""Real data in: Sentinel-2 products (SAFE, STAC, band folders) and DEM tiles -> a site folder.

The folder follows the site contract (docs/data.md, "A site on disk"); docs/architecture.md places ingest in the
layers (it writes what data/ reads). Names are imported on first use (rasterio, scipy, shapely take a second), so
the command line answers ``--help`` at once.
"""

from importlib import import_module
from typing import Any

_WHERE = {"DemMosaic": "dem_tiles", "mosaic_dem": "dem_tiles", "BandFile": "products", "Product": "products",
          "Reflectance": "products", "read_window": "products", "DEFAULT_MASK_CLASSES": "scl_classes",
          "SCL_CLASSES": "scl_classes", "build_site": "site_builder", "open_product": "sources"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"slidemap.ingest.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
