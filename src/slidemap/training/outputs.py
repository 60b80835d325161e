"""What a run leaves behind: stitched test-area predictions as GeoTIFFs and metrics.json, all atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from slidemap.data.patches import Patches
from slidemap.data.site import Site
from slidemap.data.split import Block
from slidemap.io import atomic_path, write_json

METRICS_FILE = "metrics.json"


def stitch(patches: Patches, probs: np.ndarray, block: Block) -> np.ndarray:
    """Place per-patch probabilities (N, w, w) back onto the block; pixels no patch covers are NaN."""
    out = np.full((block.rows, block.cols), np.nan, np.float32)
    w = probs.shape[-1]
    for (r, c), p in zip(patches.origins, probs):
        r0, c0 = r - block.row0, c - block.col0
        h, wd = min(w, block.rows - r0), min(w, block.cols - c0)
        out[r0:r0 + h, c0:c0 + wd] = p[:h, :wd]
    return out


def write_prediction(out_dir: Path, site: Site, block: Block, prob: np.ndarray, threshold: float = 0.5) -> list[Path]:
    """Probability (float32, NaN nodata) and binary (uint8, 255 nodata) GeoTIFFs on the site's own grid."""
    rows, cols = block.slices
    valid = site.valid[rows, cols] & np.isfinite(prob)
    transform = window_transform(Window(block.col0, block.row0, block.cols, block.rows), site.transform)
    common = dict(driver="GTiff", width=block.cols, height=block.rows, count=1, crs=site.crs, transform=transform,
                  tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    written = []
    prob_path = out_dir / f"{site.name}_probability.tif"
    with atomic_path(prob_path) as tmp:
        with rasterio.open(tmp, "w", dtype="float32", nodata=float("nan"), **common) as dst:
            dst.write(np.where(valid, prob, np.nan).astype(np.float32), 1)
    written.append(prob_path)
    bin_path = out_dir / f"{site.name}_binary.tif"
    binary = np.where(valid, (np.nan_to_num(prob) >= threshold).astype(np.uint8), 255).astype(np.uint8)
    with atomic_path(bin_path) as tmp:
        with rasterio.open(tmp, "w", dtype="uint8", nodata=255, **common) as dst:
            dst.write(binary, 1)
    written.append(bin_path)
    return written


def write_metrics(out_dir: Path, payload: dict[str, Any]) -> Path:
    """metrics.json (the run's result record; its presence marks the run complete)."""
    path = out_dir / METRICS_FILE
    write_json(path, payload)
    return path
