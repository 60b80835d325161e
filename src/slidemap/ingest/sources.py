"""Which reader a Sentinel-2 path needs: a small table of source kinds, tried in order."""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from pathlib import Path

from slidemap.errors import InputError
from slidemap.ingest.band_folder import is_band_folder, open_band_folder
from slidemap.ingest.products import Product
from slidemap.ingest.safe import is_safe, open_safe
from slidemap.ingest.stac import is_stac, open_stac

SOURCES: tuple[tuple[str, Callable[[Path], bool], Callable[[Path], Product]], ...] = (
    ("safe", is_safe, open_safe),
    ("stac", is_stac, open_stac),
    ("band_folder", is_band_folder, open_band_folder),
)
"""(kind, recogniser, opener): a SAFE folder or zip, a STAC item JSON, a folder of band rasters."""

_EXPECTED = ("expected a Sentinel-2 L2A .SAFE folder or .zip (with MTD_MSIL2A.xml), a STAC item .json, "
             "or a folder of band rasters named *B02*, *B03*, *B04*, *B08* (+ *SCL*)")


def open_product(path: str | PathLike[str], allow_l1c: bool = False) -> Product:
    """Open any supported product; an L1C (top-of-atmosphere) product is refused unless ``allow_l1c``."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "not found")
    opener = next((open_ for _, recognise, open_ in SOURCES if recognise(path)), None)
    if opener is None:
        inner = sorted(path.glob("*.SAFE")) if path.is_dir() else []
        hint = f" (did you mean {inner[0]}?)" if len(inner) == 1 else ""
        raise InputError(path, f"not a Sentinel-2 product: {_EXPECTED}{hint}")
    product = opener(path)
    if product.level == "L1C" and not allow_l1c:
        raise InputError(path, "is a Level-1C product (top-of-atmosphere reflectance, no scene classification); "
                               "slidemap needs Level-2A surface reflectance: use the L2A product (or Sen2Cor), "
                               "or pass --allow-l1c to map from top-of-atmosphere values without a cloud mask")
    return product
