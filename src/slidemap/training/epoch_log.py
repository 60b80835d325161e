"""One log line per epoch where no one watches a terminal (SLURM, nohup, a redirected sweep).

Lightning's progress bar redraws itself with carriage returns: in a log file a single 17-epoch run left about
360 KB of bar updates. ``trainer.enable_progress_bar: auto`` (the default) shows the bar when stderr is a terminal
and logs :class:`EpochLine` lines otherwise; ``true`` or ``false`` force either.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)

KEYS = (("train/loss", "train loss"), ("val/loss", "val loss"), ("val/f1", "val F1"))


def progress_bar(setting: Any) -> bool:
    """``auto``: the bar on a terminal, epoch lines elsewhere; a boolean forces it."""
    return sys.stderr.isatty() if str(setting).lower() == "auto" else bool(setting)


class EpochLine(pl.Callback):
    """Logs ``epoch 3/30: train loss 0.412, val loss 0.388, val F1 0.571 (12.4 s)`` at the end of each training
    epoch, when its validation has run and its training loss is aggregated."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        parts = [f"{name} {float(metrics[key]):.4g}" for key, name in KEYS if key in metrics]
        log.info("epoch %d/%s: %s (%.1f s)", trainer.current_epoch + 1, trainer.max_epochs, ", ".join(parts),
                 time.perf_counter() - self._start)
