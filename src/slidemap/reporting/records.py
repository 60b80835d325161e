"""What a run's metrics.json must hold before the report counts it: the record's shape checked key by key.

A record that is not what train.py writes (a truncated file, a hand-edited value, a string for a number) would
otherwise end the report in a traceback or, worse, enter a mean. The report lists such a job with the file and the
first thing wrong, beside the missing and failed jobs.
"""

from __future__ import annotations

import math
from typing import Any

from slidemap.evaluation.scoring import COUNT_KEYS, METRIC_KEYS

FRACTIONS = ("precision", "recall", "f1", "iou")
"""Per-area metrics that are fractions in [0, 1], or null where undefined (:mod:`slidemap.evaluation.scoring`)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def area_problem(area: str, metrics: Any) -> str | None:
    """What is wrong with one test area's metrics, or None."""
    if not isinstance(metrics, dict):
        return f"areas.{area} is {type(metrics).__name__}, not a mapping of metrics"
    for key in METRIC_KEYS:
        if key not in metrics:
            if key == "iou":  # records from before IoU was scored
                continue
            return f"areas.{area}.{key} is missing"
        value = metrics[key]
        if value is not None and not (_is_number(value) and 0 <= value <= 1):
            return f"areas.{area}.{key} is {value!r}, not a fraction in [0, 1] or null"
    for key in COUNT_KEYS:
        value = metrics.get(key, 0)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return f"areas.{area}.{key} is {value!r}, not a pixel count"
    return None


def record_problem(record: Any) -> str | None:
    """What keeps ``record`` (a parsed metrics.json) from being a complete run's result, or None."""
    if not isinstance(record, dict):
        return f"holds a {type(record).__name__}, not a run record"
    for key in ("model", "scenario"):
        if not isinstance(record.get(key), str) or not record[key]:
            return f"{key} is {record.get(key)!r}, not a name"
    window = record.get("window")
    if not (isinstance(window, int) and not isinstance(window, bool) and window > 0):
        return f"window is {window!r}, not a patch size in pixels"
    seed = record.get("seed")
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
        return f"seed is {seed!r}, not an integer"
    if record.get("epochs") == 0 and record.get("stopped_by") in ("max_epochs", "early_stopping"):
        return "trained zero epochs (trainer.max_epochs=0): the scores of an untrained network"
    areas = record.get("areas")
    if not isinstance(areas, dict) or not areas:
        return "has no test results (areas)"
    for area, metrics in areas.items():
        problem = area_problem(area, metrics)
        if problem:
            return problem
    return None


def undefined_metrics(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """``(area, metric) -> [run folder, ...]`` for every metric a run left undefined (null)."""
    found: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        for area, metrics in run["areas"].items():
            for key in FRACTIONS:
                if metrics.get(key) is None:
                    found.setdefault((area, key), []).append(str(run.get("dir", "?")))
    return found
