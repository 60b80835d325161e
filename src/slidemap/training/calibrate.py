"""Temperature scaling after training: fit ``T`` on the validation area, keep it in the module and the checkpoint;
with ``threshold=auto``, then the F1-optimal threshold of the calibrated probabilities on the same pixels.

The validation area already drives early stopping, so it is held out from the weights but not from model selection;
it is the only labelled area besides the test areas, which must stay untouched for the reported scores.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from slidemap.data.loading.loaders import eval_loader
from slidemap.evaluation.calibration import fit_temperature, temperature_nll
from slidemap.evaluation.histogram import best_threshold, histogram
from slidemap.io import atomic_path
from slidemap.training.module import LandslideModule

log = logging.getLogger(__name__)

MAX_PIXELS = 2**22
"""Validation pixels the temperature is fitted on at most: a seeded uniform sample of a larger area (one scalar is
pinned far below the third decimal by 4 M pixels; all 65 M of a 20,000-patch dataset took gigabytes in float64)."""


@torch.no_grad()
def validation_logits(trainer: pl.Trainer, module: LandslideModule,
                      datamodule: Any) -> tuple[np.ndarray, np.ndarray]:
    """Logits and 0/1 labels of every valid validation pixel (unsharded: every DDP rank fits the same ``T``)."""
    module.eval()
    logits, labels = [], []
    with torch.inference_mode():
        for x, y, valid in eval_loader(datamodule.data.val, datamodule.eval_batch_size, shard=False):
            with trainer.precision_plugin.forward_context():
                z = module(x.to(module.device)).float().cpu()
            logits.append(z[valid].numpy())
            labels.append(y[valid].numpy().astype(np.uint8))
    if not logits:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(logits), np.concatenate(labels)


def sample_pixels(z: np.ndarray, y: np.ndarray, cap: int = MAX_PIXELS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most ``cap`` of the pixels, drawn uniformly without replacement by ``seed`` (all of them when fewer)."""
    if z.size <= cap:
        return z, y
    keep = np.sort(np.random.default_rng(seed).choice(z.size, cap, replace=False))
    return z[keep], y[keep]


def calibrate(trainer: pl.Trainer, module: LandslideModule, datamodule: Any, ckpt: str | None) -> dict[str, Any]:
    """Fit the temperature on the validation area with the module's current (best) weights, set it on the module and
    write it into ``ckpt`` (``hyper_parameters["calibration"]``, rewritten atomically by rank 0).

    Returns the calibration record: temperature, where it was fitted, pixels, and the validation BCE before/after.
    """
    z, y = validation_logits(trainer, module, datamodule)
    total = int(z.size)
    z, y = sample_pixels(z, y)
    t = fit_temperature(z, y.astype(np.float32))
    z64, y64 = z.astype(np.float64), y.astype(np.float64)
    record = {"method": "temperature", "temperature": round(t, 6), "fitted_on": "validation", "pixels": int(z.size),
              **({"sampled_from": total} if total > z.size else {}),
              "val_bce_uncalibrated": round(temperature_nll(z64, y64, 1.0), 6) if z.size else None,
              "val_bce": round(temperature_nll(z64, y64, t), 6) if z.size else None}
    module.set_calibration(record)
    threshold = fit_threshold(module, z64, y64, t) if str(module.hparams.get("threshold")) == "auto" else None
    if ckpt and trainer.is_global_zero:
        rewrite_calibration(Path(ckpt), record, threshold)
    trainer.strategy.barrier("calibration")
    log.info("temperature %.3f fitted on %d validation pixels (BCE %s -> %s)", t, z.size,
             record["val_bce_uncalibrated"], record["val_bce"])
    return record


def fit_threshold(module: LandslideModule, logits: np.ndarray, labels: np.ndarray,
                  temperature: float) -> dict[str, Any]:
    """``threshold=auto``: the F1-optimal threshold of ``sigmoid(logit / T)`` on the validation pixels
    (:func:`~slidemap.evaluation.histogram.best_threshold`), set on the module; its record. Without a landslide
    pixel to find, the paper's 0.5 stays."""
    prob = torch.sigmoid(torch.from_numpy(logits / temperature))
    value, f1 = best_threshold(histogram(prob, torch.from_numpy(labels)).numpy())
    record = {"method": "f1_optimal" if f1 is not None else "default (no validation landslide pixel)",
              "fitted_on": "validation", "pixels": int(logits.size), "val_f1": None if f1 is None else round(f1, 6)}
    module.set_threshold(value, record)
    if f1 is None:
        log.warning("threshold=auto: the validation split has no landslide pixel to fit a threshold on (%d pixels): "
                    "the paper's %.2f is kept", logits.size, value)
    else:
        log.info("threshold %.4f fitted on %d validation pixels (F1 %s)", value, logits.size, record["val_f1"])
    return {"threshold": value, "threshold_fit": record}


def rewrite_calibration(path: Path, record: dict[str, Any], threshold: dict[str, Any] | None = None) -> None:
    """Store ``record`` as the checkpoint's ``hyper_parameters["calibration"]`` and a fitted threshold's
    ``threshold`` and ``threshold_fit`` (the file is replaced atomically)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt.setdefault("hyper_parameters", {})["calibration"] = dict(record)
    ckpt["hyper_parameters"].update(threshold or {})
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
