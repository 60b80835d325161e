"""Weights & Biases glue: summary keys per test area, a few prediction images, and a clean finish per run."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _wandb_loggers(loggers: list[Any]) -> list[Any]:
    from pytorch_lightning.loggers import WandbLogger

    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def log_predictions_to_wandb(loggers: list[Any], results: dict, maps: dict[str, np.ndarray], data: Any) -> None:
    """Summary keys ``test/<area>/<metric>`` and one image per test area (label | probability)."""
    for lg in _wandb_loggers(loggers):
        run = lg.experiment
        for area, metrics in results.items():
            for key, value in metrics.items():
                run.summary[f"test/{area}/{key}"] = value
        images, captions = [], []
        for name, prob in maps.items():
            block = data.splits[name].test
            rows, cols = block.slices
            label = data.sites[name].label[rows, cols].astype(np.float32)
            panel = np.concatenate([label, np.nan_to_num(prob)], axis=1)
            images.append((panel * 255).astype(np.uint8))
            captions.append(f"{name}: inventory | probability")
        if images:
            lg.log_image(key="test/predictions", images=images, caption=captions)


def finish_wandb(loggers: list[Any]) -> None:
    """Close the W&B run so the next sweep job starts its own."""
    if not _wandb_loggers(loggers):
        return
    import wandb

    wandb.finish()
