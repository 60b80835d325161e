"""A callback that makes every training epoch last a given time without using the CPU: a run "longer than its time
limit" for the SLURM requeue test, the same on a fast or a busy machine."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class SlowEpochs(pl.Callback):
    """Sleeps ``seconds`` before each training epoch (a signal then lands between epochs, as it mostly would)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        time.sleep(self.seconds)
