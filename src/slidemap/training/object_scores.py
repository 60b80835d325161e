"""Object scores of a training run's test areas: each area's probabilities put back in place, thresholded, and its
reference landslides and predicted polygons counted (:mod:`slidemap.evaluation.objects`).

A site's test area is one block, so a landslide across two patches is one object; a patch dataset's images are
counted one by one (their objects end at the image edge) and summed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from slidemap.data.datamodule import PreparedData
from slidemap.data.patch_set import PatchSetDataModule
from slidemap.evaluation.objects import object_counts, object_record, pooled_objects
from slidemap.evaluation.scoring import POOLED
from slidemap.mapping.rasters import binarise, stitch


def _probabilities(batches: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(list(batches)).float().numpy() if batches else np.zeros((0, 1, 1), np.float32)


def area_object_counts(datamodule: Any, predictions: list[list[torch.Tensor]],
                       threshold: float) -> dict[str, dict[str, int]]:
    """{test area: object counts} of the predictions (batches per area, as ``run.predict_areas`` gives them)."""
    if isinstance(datamodule, PatchSetDataModule):
        data = datamodule.data
        assert data is not None, "call setup() first"
        prob = datamodule.test_probabilities(predictions)
        split = data.test_split
        per = [object_counts(binarise(prob[i], threshold), split.y[i], split.valid[i]) for i in range(len(split))]
        return {datamodule.area: pooled_objects(per)}
    data = getattr(datamodule, "data", None)
    if not isinstance(data, PreparedData):
        return {}
    counts = {}
    for name, batches in zip(data.test, predictions):
        site, block = data.sites[name], data.splits[name].test
        if site.label is None:
            continue
        prob = stitch(data.test[name], _probabilities(batches), block)
        rows, cols = block.slices
        counts[name] = object_counts(binarise(prob, threshold), site.label[rows, cols],
                                     site.valid[rows, cols] & np.isfinite(prob))
    return counts


def add_object_scores(results: dict[str, dict[str, Any]], counts: dict[str, dict[str, int]]) -> None:
    """Put each area's ``objects`` record into ``results`` (a module's test results), ``all`` pooled."""
    for area, c in counts.items():
        if area in results:
            results[area]["objects"] = object_record(c)
    if counts and POOLED in results:
        results[POOLED]["objects"] = object_record(pooled_objects(list(counts.values())))
