"""slidemap: landslide mapping from free Sentinel-2 imagery and DEMs."""

__version__ = "0.1.0"
