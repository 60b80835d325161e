"""Real data in: Sentinel-2 products (SAFE, STAC, band folders) and DEM tiles -> a site folder.

The folder follows the README's "The data contract: a site on disk"; docs/architecture.md places ingest in the
layers (it writes what data/ reads).
"""

from slidemap.ingest.dem_tiles import DemMosaic, mosaic_dem
from slidemap.ingest.products import BandFile, Product, Reflectance, read_window
from slidemap.ingest.scl import DEFAULT_MASK_CLASSES, SCL_CLASSES
from slidemap.ingest.site_builder import build_site
from slidemap.ingest.sources import open_product

__all__ = ["BandFile", "DEFAULT_MASK_CLASSES", "DemMosaic", "Product", "Reflectance", "SCL_CLASSES", "build_site",
           "mosaic_dem", "open_product", "read_window"]
