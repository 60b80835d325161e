"""A site folder (the site contract, docs/data.md) -> ``Site``: channel names and units, raster grids and reading,
which band of a file is which, reflectance, labels, slope, NDVI and the pre-event image."""
