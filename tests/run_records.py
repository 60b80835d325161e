"""Fabricated run results for the report's tests: metrics.json records as run.py writes them, and a sweep folder
holding them (no Hydra config, no maps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def metrics_record(model: str, window: int, scenario: str, seed: int, f1_by_area: dict[str, float],
                   spread: float = 0.0, **extra: Any) -> dict:
    """One run's metrics.json: per test area F1 as given, precision F1 + ``spread``, recall F1 - ``spread``; the
    pooled ``all`` area at 0.5. ``extra`` adds keys (``inputs``, ``augment``, ``stopped_by``, ...)."""
    areas = {a: {"precision": f + spread, "recall": f - spread, "f1": f, "iou": 0.3, "tp": 1, "fp": 1, "fn": 1}
             for a, f in f1_by_area.items()}
    areas["all"] = {"precision": 0.5, "recall": 0.5, "f1": 0.5, "iou": 0.3, "tp": 1, "fp": 1, "fn": 1}
    return {"model": model, "window": window, "scenario": scenario, "seed": seed, "epochs": 5 + seed,
            "wall_time_s": 1.0, "train_sites": [scenario], "areas": areas, **extra}


def write_runs(folder: Path, records: list[dict]) -> Path:
    """One job folder per record, ``<model>-<window>-<scenario>-<inputs>-<augment>-seed<seed>``, with its
    metrics.json; returns ``folder``."""
    for r in records:
        job = folder / (f"{r['model']}-{r['window']}-{r['scenario']}-{r.get('inputs', 'post')}-"
                        f"{r.get('augment', 'none')}-seed{r['seed']}")
        job.mkdir(parents=True)
        (job / "metrics.json").write_text(json.dumps(r))
    return folder
