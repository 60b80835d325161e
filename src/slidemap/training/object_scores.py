"""Object scores of a training run's test areas (:mod:`slidemap.evaluation.objects`): reference landslides found and
predicted polygons that hit one.

A site's test area is one block: its stitched probabilities are thresholded and counted as a whole, so a landslide
across two patches is one object. A patch dataset's test tiles are counted one by one as the test loop scores them
(:class:`TileObjectCounts`, bounded memory, summed over DDP ranks): an object ends at the tile edge.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from slidemap.data.loading.datamodule import PreparedData
from slidemap.evaluation.objects import COUNT_KEYS, object_counts, object_record, pooled_objects
from slidemap.evaluation.scoring import POOLED
from slidemap.mapping.rasters import binarise, stitch


class TileObjectCounts(Metric):
    """Object counts summed over test tiles: ``update(probs, target, threshold)`` with target -1 = not scored."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for key in COUNT_KEYS:
            self.add_state(key, default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor, threshold: float) -> None:
        p = probs.detach().float().cpu().numpy()
        t = target.detach().cpu().numpy()
        for k in range(p.shape[0]):
            counts = object_counts(binarise(p[k], threshold), t[k] == 1, t[k] != -1)
            for key in COUNT_KEYS:
                setattr(self, key, getattr(self, key) + counts[key])

    def compute(self) -> dict[str, int]:
        return {key: int(getattr(self, key)) for key in COUNT_KEYS}


def site_object_counts(data: PreparedData, predictions: list[list[torch.Tensor]],
                       threshold: float) -> dict[str, dict[str, int]]:
    """{test area: object counts} of each site's stitched test block (batches per area, as ``predict_areas``)."""
    counts = {}
    for name, batches in zip(data.test, predictions):
        site, block = data.sites[name], data.splits[name].test
        if site.label is None:
            continue
        probs = torch.cat(list(batches)).float().numpy() if batches else np.zeros((0, 1, 1), np.float32)
        prob = stitch(data.test[name], probs, block)
        rows, cols = block.slices
        counts[name] = object_counts(binarise(prob, threshold), site.label[rows, cols],
                                     site.valid[rows, cols] & np.isfinite(prob))
    return counts


def add_object_scores(results: dict[str, dict[str, Any]], counts: dict[str, dict[str, int]], unit: str) -> None:
    """Put each area's ``objects`` record into ``results`` (a module's test results), ``all`` pooled; ``unit``
    says what an object could not cross (``test area`` or ``tile``)."""
    for area, c in counts.items():
        if area in results:
            results[area]["objects"] = {**object_record(c), "counted_per": unit}
    if counts and POOLED in results:
        results[POOLED]["objects"] = {**object_record(pooled_objects(list(counts.values()))), "counted_per": unit}
