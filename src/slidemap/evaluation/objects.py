"""Object-level scores of a binary map against an inventory: landslides found, polygons that are false alarms.

Objects are counted as the maps draw them (:mod:`slidemap.mapping.polygons`): a predicted landslide is a
4-connected region, an inventory landslide an 8-connected component of the label. The minimum overlap is one pixel
(:data:`MIN_OVERLAP`): a landslide is found when at least one of its valid pixels is predicted, a predicted polygon
hits one when at least one of its pixels is a labelled landslide pixel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from slidemap.mapping.polygons import INVENTORY_CONNECTIVITY, PREDICTED_CONNECTIVITY, predicted_mask

MIN_OVERLAP = "1 pixel"
"""The overlap that makes a landslide found and a predicted polygon a hit, as recorded in metrics.json."""

COUNT_KEYS = ("landslides", "landslides_hit", "polygons", "false_alarms")


def object_counts(binary: np.ndarray, label: np.ndarray, valid: np.ndarray | None = None) -> dict[str, int]:
    """Inventory landslides hit by at least one predicted pixel, and predicted polygons touching no label.

    Only valid pixels count: labels outside ``valid`` are ignored.
    """
    pred = predicted_mask(binary)
    truth = np.asarray(label) == 1
    if valid is not None:
        pred &= valid
        truth &= valid
    inventory, m = ndimage.label(truth, structure=INVENTORY_CONNECTIVITY)
    hit = np.bincount(inventory[pred], minlength=m + 1)[1:] > 0
    regions, n = ndimage.label(pred, structure=PREDICTED_CONNECTIVITY)
    touching = np.bincount(regions[truth], minlength=n + 1)[1:] > 0
    return {"landslides": int(m), "landslides_hit": int(hit.sum()), "polygons": int(n),
            "false_alarms": int(n - touching.sum())}


def object_scores(counts: dict[str, int]) -> dict[str, float | int]:
    """Counts plus ``hit_rate`` (share of inventory landslides hit) and ``false_alarm_rate`` (share of
    predicted polygons without any labelled pixel); an empty denominator gives 0, as for pixel scores."""
    m, n = counts["landslides"], counts["polygons"]
    return {**counts, "hit_rate": counts["landslides_hit"] / m if m else 0.0,
            "false_alarm_rate": counts["false_alarms"] / n if n else 0.0}


def pooled_objects(per_area: list[dict[str, int]]) -> dict[str, int]:
    """Sum object counts over areas ("all" pools, as for the pixel metrics)."""
    return {k: sum(int(c[k]) for c in per_area) for k in COUNT_KEYS}


def object_record(counts: dict[str, int]) -> dict[str, float | int | str | None]:
    """An area's ``objects`` entry of a training run's metrics.json: the counts, ``found`` (share of reference
    landslides found; None without any), ``hit`` (share of predicted polygons that hit one; None without any) and
    the minimum overlap."""
    m, n = counts["landslides"], counts["polygons"]
    return {**{k: int(counts[k]) for k in COUNT_KEYS}, "found": counts["landslides_hit"] / m if m else None,
            "hit": (n - counts["false_alarms"]) / n if n else None, "min_overlap": MIN_OVERLAP}
