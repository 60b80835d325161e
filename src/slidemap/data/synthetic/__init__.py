"""The built-in synthetic three-site benchmark (docs/architecture.md), written to disk in the real site format.

The writer (scipy, rasterio, shapely) is imported on first use, so its defaults can be shown in ``slidemap --help``
without it."""

from typing import Any

from slidemap.data.synthetic.defaults import DEFAULT_SCALE, DEFAULT_SEED

__all__ = ["DEFAULT_SCALE", "DEFAULT_SEED", "ensure_synthetic", "write_synthetic"]


def __getattr__(name: str) -> Any:
    if name in ("ensure_synthetic", "write_synthetic"):
        from slidemap.data.synthetic import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
