"""Tiny patch datasets in the common layout, written from NumPy (no binary blobs in git).

``DIR/{train,val,test}/{images,masks}/<stem>.<ext>`` with ``DIR/dataset.yaml``. :func:`scene` draws a learnable
patch: vegetation (low red, high nir) on a tilted DEM with a bare, bright rectangle that is the landslide.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from rasterio.errors import NotGeoreferencedWarning

SIZE = 32
COUNTS = {"train": 6, "val": 2, "test": 2}


def scene(seed: int, size: int = SIZE) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Reflectance bands by name, a DEM (metres) and the 0/1 mask of one patch."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    r, c = rng.integers(2, size // 2, 2)
    mask[r:r + size // 3, c:c + size // 4] = 1
    noise = 0.01 * rng.random((4, size, size))
    bare = mask.astype(np.float64)
    bands = {"blue": 0.04 + 0.08 * bare, "green": 0.06 + 0.08 * bare, "red": 0.04 + 0.14 * bare,
             "nir": 0.35 - 0.15 * bare}
    bands = {k: (v + noise[i]).astype(np.float32) for i, (k, v) in enumerate(bands.items())}
    rows = np.arange(size, dtype=np.float32)[:, None]
    bands["dem"] = np.broadcast_to(500.0 + 3.0 * rows, (size, size)).astype(np.float32) + 0.5 * bare.astype(np.float32)
    return bands, mask


def write_tif(path: Path, data: np.ndarray, nodata: float | None = None) -> None:
    """A (C, H, W) or (H, W) array as a GeoTIFF without georeference (as many patch releases ship them)."""
    data = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                           dtype=data.dtype, nodata=nodata) as dst:
            dst.write(data)


def write_png(path: Path, data: np.ndarray) -> None:
    """A (C, H, W) or (H, W) uint8/uint16 array as a PNG (through GDAL, as slidemap reads it)."""
    data = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="PNG", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                           dtype=data.dtype) as dst:
            dst.write(data)


def write_npy(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, data)


def write_spec(root: Path, **spec: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def write_dataset(root: Path, fmt: str, counts: dict[str, int] | None = None) -> Path:
    """A learnable dataset in one format: ``tif`` (float32 reflectance red, green, blue, nir, dem at 10 m),
    ``png`` (uint8 RGB brightness), ``npy`` ((H, W, C) Sentinel-2 ids B4, B3, B2, B8 and dem; masks with 255 as
    no-data in their first row)."""
    counts = COUNTS if counts is None else counts
    seed = 0
    for split, n in counts.items():
        for i in range(1, n + 1):
            bands, mask = scene(seed := seed + 1)
            stem = f"patch_{i}"
            if fmt == "tif":
                write_tif(root / split / "images" / f"{stem}.tif",
                          np.stack([bands[k] for k in ("red", "green", "blue", "nir", "dem")]))
                write_tif(root / split / "masks" / f"{stem}.tif", mask)
            elif fmt == "png":
                rgb = np.stack([bands[k] for k in ("red", "green", "blue")]) / 0.25 * 255
                write_png(root / split / "images" / f"{stem}.png", np.clip(rgb, 0, 255).astype(np.uint8))
                write_png(root / split / "masks" / f"{stem}.png", mask)
            else:
                write_npy(root / split / "images" / f"{stem}.npy",
                          np.stack([bands[k] for k in ("red", "green", "blue", "nir", "dem")], axis=-1))
                labelled = mask.copy()
                labelled[0] = 255
                write_npy(root / split / "masks" / f"{stem}.npy", labelled)
    if fmt == "tif":
        return write_spec(root, channels=["red", "green", "blue", "nir", "dem"], units="reflectance",
                          pixel_size=10.0)
    if fmt == "png":
        return write_spec(root, channels=["red", "green", "blue"], units="brightness", name="rgb-patches")
    return write_spec(root, channels=["B4", "B3", "B2", "B8", "dem"], units="reflectance", pixel_size=10.0,
                      npy_layout="hwc", mask_nodata=255)


def stretch(band: np.ndarray) -> np.ndarray:
    """A band stretched on its own to 0-255 (min -> 0, max -> 255), as 8-bit renderings of public sets are."""
    low, high = float(band.min()), float(band.max())
    return np.round((band - low) / max(high - low, 1e-12) * 255).astype(np.uint8)


L4S_SPLITS = {"train": 6, "validation": 2, "test": 2}


def write_l4s_png(root: Path, counts: dict[str, int] | None = None, size: int = SIZE) -> Path:
    """The Landslide4Sense-derived PNG layout as published (issue 25): ``{train,validation,test}/{images,masks}/``,
    ``image_N.png`` paired with ``mask_N.png`` (N from 0 in each split), RGBA images (all-opaque alpha) whose RGB
    is stretched per patch, RGBA masks storing 0/255 in R = G = B. No dataset.yaml: ``slidemap dataset`` infers it."""
    seed = 100
    for split, n in (counts or L4S_SPLITS).items():
        for i in range(n):
            bands, mask = scene(seed := seed + 1, size)
            opaque = np.full((size, size), 255, np.uint8)
            rgb = [stretch(bands[k]) for k in ("red", "green", "blue")]
            write_png(root / split / "images" / f"image_{i}.png", np.stack([*rgb, opaque]))
            m = (mask * 255).astype(np.uint8)
            write_png(root / split / "masks" / f"mask_{i}.png", np.stack([m, m, m, opaque]))
    return root
