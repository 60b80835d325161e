"""Weights & Biases glue: summary keys per test area, a few prediction images, and a clean finish per run."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _wandb_loggers(loggers: list[Any]) -> list[Any]:
    from pytorch_lightning.loggers import WandbLogger

    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def log_predictions_to_wandb(loggers: list[Any], results: dict, previews: dict[str, np.ndarray],
                             threshold: float | None = None) -> None:
    """Summary keys ``test/<area>/<metric>`` (``objects`` as a nested record), ``test/threshold`` (the one the
    scores and maps used: ``threshold=auto`` fits it) and one preview image per test area (values 0..1)."""
    for lg in _wandb_loggers(loggers):
        run = lg.experiment
        if threshold is not None:
            run.summary["test/threshold"] = threshold
        for area, metrics in results.items():
            for key, value in metrics.items():
                run.summary[f"test/{area}/{key}"] = value
        if previews:
            lg.log_image(key="test/predictions", images=[(np.clip(p, 0, 1) * 255).astype(np.uint8)
                                                         for p in previews.values()],
                         caption=[f"{name}: inventory | probability" for name in previews])


def finish_wandb(loggers: list[Any]) -> None:
    """Close the W&B run so the next sweep job starts its own."""
    if not _wandb_loggers(loggers):
        return
    import wandb

    wandb.finish()
