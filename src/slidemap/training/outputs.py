"""What a run leaves behind: stitched test-area predictions as GeoTIFFs and metrics.json, all atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from slidemap.data.patches import Patches
from slidemap.data.site import Site
from slidemap.data.split import Block
from slidemap.io import write_json
from slidemap.predict import write_maps

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
    """Probability (float32, NaN nodata) and binary (uint8, 255 nodata) GeoTIFFs of a block on the site's grid.

    The same writer as ``slidemap map`` (tiled, compressed, overviews, atomic), so every map opens alike.
    """
    rows, cols = block.slices
    prob = np.where(site.valid[rows, cols], prob, np.nan).astype(np.float32)
    transform = window_transform(Window(block.col0, block.row0, block.cols, block.rows), site.transform)
    _, _, paths = write_maps(out_dir, site.name, [(0, prob)], prob.shape, transform, site.crs, threshold)
    return paths


def write_metrics(out_dir: Path, payload: dict[str, Any]) -> Path:
    """metrics.json (the run's result record; its presence marks the run complete)."""
    path = out_dir / METRICS_FILE
    write_json(path, payload)
    return path
