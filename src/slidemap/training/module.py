"""LightningModule: the configured loss (the paper's masked BCE by default) and optimiser, pixel metrics per test area.

Its ``temperature`` (1 until :func:`slidemap.training.calibrate.calibrate` fits one on the validation area) divides
the logits of every test and prediction probability, and is kept in the checkpoint's
``hyper_parameters["calibration"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import BinaryStatScores

from slidemap.evaluation.calibration import CalibrationBins, bins_record, ece, pool_bins
from slidemap.evaluation.histogram import ProbabilityHistogram, average_precision
from slidemap.evaluation.scoring import POOLED, area_results, as_number, scores
from slidemap.errors import InputError
from slidemap.training.losses import build_loss, masked_bce
from slidemap.training.object_scores import TileObjectCounts, add_object_scores

__all__ = ["LandslideModule", "masked_bce"]

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class LandslideModule(pl.LightningModule):
    """Wraps any segmentation network that maps (N, C, H, W) to one logit per pixel.

    Args:
        net: The network, built from ``model["net"]`` (:func:`slidemap.models.build_net`).
        optimizer: Builds the optimiser from the parameters (``conf/optimizer``, a ``_partial_`` of
            ``torch.optim.Adam`` with the paper's lr 1e-3 and betas (0.9, 0.999) by default).
        model: The resolved model config (``name``, ``net`` with every argument): the checkpoint keeps it, so
            loading rebuilds the network exactly (:func:`slidemap.mapping.checkpoint.load_checkpoint`).
        test_areas: Names of the test dataloaders, in order; metrics are kept per area and pooled as "all".
        pos_weight: Optional positive-class weight for the BCE loss.
        encoder_lr_scale: The encoder's learning rate as a multiple of the optimiser's (networks with an
            ``encoder_module()``, e.g. smp models with pretrained weights); 1 = one learning rate for all.
        loss: The training loss (:func:`slidemap.training.losses.build_loss` of the ``loss`` group); None = the
            paper's masked BCE with ``pos_weight``.
        threshold: Probability threshold for the binary map (the paper: 0.5), or ``auto``: 0.5 for the validation
            F1 during training, then the F1-optimal threshold on the validation area
            (:func:`slidemap.training.calibrate.calibrate` calls :meth:`set_threshold`), kept in the checkpoint's
            ``hyper_parameters["threshold"]``.
        data_info: Channels and normalisation, recorded in the checkpoint so maps can be made later.
        channels_last: Keep activations in NHWC layout: oneDNN's fast path for bf16 convolutions on CPU
            (ResU-Net at 128 px: 363 vs 543 ms per step on this project's 2-core machine).
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory | None = None, model: dict | None = None,
                 test_areas: list[str] | None = None, pos_weight: float | None = None, threshold: float | str = 0.5,
                 data_info: dict | None = None, channels_last: bool = True, loss: nn.Module | None = None,
                 encoder_lr_scale: float = 1.0) -> None:
        super().__init__()
        self.loss_fn = loss if loss is not None else build_loss(None, pos_weight)
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.optimizer_factory = optimizer
        self.save_hyperparameters(ignore=["net", "optimizer", "loss"])
        self.test_areas = list(test_areas or [])
        self.threshold = 0.5 if str(threshold) == "auto" else float(threshold)
        self.threshold_fit: dict[str, Any] | None = None
        self.val_stats = BinaryStatScores(threshold=self.threshold, ignore_index=-1)
        self.test_stats = nn.ModuleList(BinaryStatScores(threshold=self.threshold, ignore_index=-1)
                                        for _ in self.test_areas)
        self.histograms = nn.ModuleList(ProbabilityHistogram() for _ in self.test_areas)
        self.tile_objects = nn.ModuleList(TileObjectCounts() for _ in self.test_areas)
        self.calibrated_bins = nn.ModuleList(CalibrationBins() for _ in self.test_areas)
        self.raw_bins = nn.ModuleList(CalibrationBins() for _ in self.test_areas)
        self.temperature = 1.0
        self.calibration: dict[str, Any] | None = None
        self.test_results: dict[str, dict[str, Any]] = {}
        self.reliability: dict[str, dict[str, list[float]]] = {}

    def set_calibration(self, record: dict[str, Any] | None) -> None:
        """Use this calibration record (``{"temperature": T, ...}``; None = uncalibrated, T = 1)."""
        self.calibration = dict(record) if record else None
        self.temperature = float(record["temperature"]) if record else 1.0

    def set_threshold(self, threshold: float, record: dict[str, Any] | None = None) -> None:
        """Score and map at ``threshold`` from now on; ``record`` says how it was chosen (``threshold=auto``)."""
        self.threshold = float(threshold)
        self.threshold_fit = dict(record) if record else None
        for stat in self.test_stats:
            stat.threshold = self.threshold

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hp = checkpoint.setdefault("hyper_parameters", {})
        if self.calibration:
            hp["calibration"] = dict(self.calibration)
        if self.threshold_fit:
            hp["threshold"], hp["threshold_fit"] = self.threshold, dict(self.threshold_fit)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint with a calibration brings it; one without keeps the module's (DDP ranks may read the file
        before rank 0 has rewritten it with the temperature every rank fitted alike)."""
        hp = checkpoint.get("hyper_parameters") or {}
        if hp.get("calibration"):
            self.set_calibration(hp["calibration"])
        if hp.get("threshold_fit") and str(self.hparams.get("threshold")) == "auto":  # a given threshold stays
            self.set_threshold(float(hp["threshold"]), hp["threshold_fit"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, H, W), float32 even under bf16 autocast (loss, metrics and maps want full precision)."""
        if self.hparams.get("channels_last", False):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)[:, 0].float()

    def _loss(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, valid = batch[:3]
        logits = self(x)
        weight = batch[3] if len(batch) > 3 else None
        return self.loss_fn(logits, y, valid, weight), logits

    @staticmethod
    def _masked_target(y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return torch.where(valid, y.long(), torch.full_like(y, -1, dtype=torch.long))

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch[0].shape[0])
        return loss

    def on_train_epoch_end(self) -> None:
        """Stop a run whose training loss is no longer a number: what it would score and map means nothing (checked
        once per epoch on the logged mean, no per-step synchronisation)."""
        loss = self.trainer.callback_metrics.get("train/loss")
        if loss is not None and not bool(torch.isfinite(loss)):
            raise InputError("train/loss", f"training diverged: the training loss is {float(loss)} in epoch "
                                           f"{self.current_epoch} (a learning rate too high for this data, or NaN "
                                           "in the inputs or the initial weights): lower optimizer.lr or check them; "
                                           "nothing is scored")

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        loss, logits = self._loss(batch)
        n_valid = batch[2].sum().clamp_min(1)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=int(n_valid), sync_dist=True)
        self.val_stats.update(torch.sigmoid(logits), self._masked_target(batch[1], batch[2]))

    def on_validation_epoch_end(self) -> None:
        tp, fp, _, fn, _ = self.val_stats.compute().tolist()
        self.log("val/f1", as_number(scores(tp, fp, fn)["f1"]), prog_bar=True, sync_dist=True)
        self.val_stats.reset()

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        _, y, valid = batch[:3]
        logits = self(batch[0])
        probs = torch.sigmoid(logits / self.temperature)
        target = self._masked_target(y, valid)
        self.test_stats[dataloader_idx].update(probs, target)
        self.histograms[dataloader_idx].update(probs, target)
        self.tile_objects[dataloader_idx].update(probs, target, self.threshold)
        self.calibrated_bins[dataloader_idx].update(probs, target)
        self.raw_bins[dataloader_idx].update(torch.sigmoid(logits), target)

    def on_test_epoch_end(self) -> None:
        """Metrics per area over every valid pixel, and "all" pooled from the areas' counts."""
        counts, calibrated, raw = {}, {}, {}
        hists, objects = {}, {}
        for name, stat, cal, unc, hist, obj in zip(self.test_areas, self.test_stats, self.calibrated_bins,
                                                   self.raw_bins, self.histograms, self.tile_objects):
            tp, fp, tn, fn, _ = (int(v) for v in stat.compute().tolist())
            counts[name] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
            calibrated[name], raw[name] = bins_record(cal.compute()), bins_record(unc.compute())
            hists[name], objects[name] = hist.compute().cpu().numpy(), obj.compute()
            for metric in (stat, cal, unc, hist, obj):
                metric.reset()
        hists[POOLED] = sum(hists.values())
        calibrated[POOLED], raw[POOLED] = pool_bins(list(calibrated.values())), pool_bins(list(raw.values()))
        results = area_results(counts)
        for area in results:  # ECE of the probabilities the maps hold, and of the network's raw sigmoid
            results[area]["ece"] = ece(calibrated[area])
            results[area]["ece_uncalibrated"] = ece(raw[area])
            results[area]["average_precision"] = average_precision(hists[area])  # threshold-free
        for area, metrics in results.items():
            for key in ("precision", "recall", "f1", "iou", "mcc", "average_precision", "ece"):
                if metrics[key] is not None:  # an undefined metric is not logged as a number
                    self.log(f"test/{area}/{key}", metrics[key], add_dataloader_idx=False, sync_dist=True)
        add_object_scores(results, objects, "tile")  # a site run recounts its stitched areas (training.run)
        self.test_results = results
        self.reliability = calibrated

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return torch.sigmoid(self(batch[0]) / self.temperature)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_factory is None:
            raise ValueError("LandslideModule needs an optimizer factory (conf/optimizer, e.g. a _partial_ Adam)")
        scale = float(self.hparams.get("encoder_lr_scale", 1.0))
        encoder = self.net.encoder_module() if hasattr(self.net, "encoder_module") else None
        if scale == 1.0 or encoder is None:
            return self.optimizer_factory(p for p in self.parameters() if p.requires_grad)
        base = float(getattr(self.optimizer_factory, "keywords", {}).get("lr", 1e-3))
        inside = {id(p) for p in encoder.parameters()}
        groups = [{"params": [p for p in encoder.parameters() if p.requires_grad], "lr": base * scale},
                  {"params": [p for p in self.parameters() if p.requires_grad and id(p) not in inside]}]
        return self.optimizer_factory([g for g in groups if g["params"]])
