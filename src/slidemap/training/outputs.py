"""What a training run leaves besides its checkpoint: each test area's maps (through the mapping layer) and previews.

Site test areas are stitched from their patch predictions and written as GeoTIFFs on the site's grid;
patch datasets (Landslide4Sense, ``data=patches``) get previews only: their patches need not carry a georeference,
and metrics.json is the record.
"""

from __future__ import annotations

from pathlib import Path

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from slidemap.data.loading.datamodule import PreparedData
from slidemap.data.loading.loaders import eval_loader, patch_dataset
from slidemap.data.patchsets.base import PatchSetData, PatchSetDataModule
from slidemap.mapping.rasters import stitch, write_prediction

PREDICTIONS_DIR = "predictions"


def _probabilities(batches: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(list(batches)).float().numpy() if batches else np.zeros((0, 1, 1), np.float32)


def write_site_maps(out_dir: Path, data: PreparedData, predictions: list[list[torch.Tensor]],
                    threshold: float) -> dict[str, np.ndarray]:
    """Stitch each test area's patch predictions into GeoTIFF maps on the site's grid.

    Returns one preview image per area (inventory | probability, values 0..1) for the experiment logger.
    """
    previews = {}
    for name, batches in zip(data.test, predictions):
        site, block = data.sites[name], data.splits[name].test
        prob = stitch(data.test[name], _probabilities(batches), block)
        write_prediction(out_dir / PREDICTIONS_DIR, site, block, prob, threshold)
        label = site.label if site.label is not None else np.zeros(site.shape, np.uint8)
        rows, cols = block.slices
        previews[name] = np.concatenate([label[rows, cols].astype(np.float32), np.nan_to_num(prob)], axis=1)
    return previews


Predict = Callable[[list[DataLoader]], list[list[torch.Tensor]]]
"""Probabilities of every patch of some loaders, batch by batch per loader (``training.run.predict_areas``)."""


def patch_previews(datamodule: PatchSetDataModule, predict: Predict, count: int) -> dict[str, np.ndarray]:
    """Previews (mask | probability, 0..1) of the ``count`` test patches with the most landslide pixels: only their
    tiles are predicted (all test probabilities of a 20,000-patch set would take a gigabyte for four pictures)."""
    data: PatchSetData | None = datamodule.data
    assert data is not None, "call setup() first"
    split = data.test_split
    landslide = (split.y.astype(bool) & split.valid).reshape(len(split), -1).sum(axis=1)
    chosen = sorted(np.argsort(-landslide, kind="stable")[:count])
    if not chosen:
        return {}
    tiles = np.flatnonzero(np.isin(data.test.origins[:, 0], chosen))
    loader = eval_loader(Subset(patch_dataset(data.test), tiles.tolist()), datamodule.eval_batch_size, shard=False)
    batches = predict([loader])[0]
    probs = torch.cat(list(batches)).float().numpy() if batches else np.zeros((0, 1, 1), np.float32)
    row = {image: k for k, image in enumerate(chosen)}
    prob = np.zeros((len(chosen), *split.y.shape[1:]), np.float32)
    w = datamodule.window
    for (i, r, c), p in zip(data.test.origins[tiles], probs):
        prob[row[int(i)], r:r + w, c:c + w] = p
    return {f"{datamodule.area}/{split.names[i]}":
            np.concatenate([split.y[i].astype(np.float32), np.where(split.valid[i], prob[row[i]], 0.0)], axis=1)
            for i in chosen}


def write_test_outputs(out_dir: Path, datamodule: object, predict: Predict, threshold: float,
                       previews: int = 4) -> dict[str, np.ndarray]:
    """The run's test maps (site data) or previews only (patch datasets); returns the previews for the logger."""
    if isinstance(datamodule, PatchSetDataModule):
        return patch_previews(datamodule, predict, previews)
    data = getattr(datamodule, "data", None)
    if not isinstance(data, PreparedData):
        raise TypeError(f"no test outputs for {type(datamodule).__name__}: its data is not site patches")
    return write_site_maps(out_dir, data, predict(datamodule.predict_dataloader()), threshold)
