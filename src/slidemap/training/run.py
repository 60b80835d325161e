"""One training run from a Hydra config: data, model, fit with early stopping, test every area, write outputs."""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from slidemap.config_checks import check_choice
from slidemap.data.loading.datamodule import PreparedData
from slidemap.data.tiling.split import WINDOWS
from slidemap.errors import InputError
from slidemap.evaluation.scoring import shown
from slidemap.io import atomic_path
from slidemap.models.build import build_net, net_config
from slidemap.runs import METRICS_FILE, completed_run, loss_name, output_dir, write_metrics
from slidemap.training.calibrate import calibrate
from slidemap.training.card import build_card, data_kind_of, store_card
from slidemap.training.distributed import distributed_session, install_hydra_child_command
from slidemap.training.encoder_weights import apply_encoder_options, with_weights_normaliser
from slidemap.training.epoch_log import EpochLine, progress_bar
from slidemap.training.identity import (RunIdentity, claim_run_dir, drop_resume_state, identity_record,
                                       relocate_resume_state, run_identity, stopped_by)
from slidemap.training.losses import build_loss
from slidemap.training.module import LandslideModule
from slidemap.training.object_scores import add_object_scores, site_object_counts
from slidemap.training.outputs import write_test_outputs
from slidemap.training.trainer_errors import trainer_setting_errors
from slidemap.training.wandb_utils import finish_wandb, log_predictions_to_wandb

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id.txt"


def _sweep_group() -> str | None:
    if HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN":
        return str(HydraConfig.get().sweep.dir)
    return None


def _wandb_run_id(out: Path) -> str:
    """The run directory's W&B run id, kept in a file so a resumed job continues the same W&B run."""
    id_file = out / WANDB_ID_FILE
    if id_file.exists():
        return id_file.read_text().strip()
    run_id = uuid.uuid4().hex[:8]  # W&B run ids: short lowercase alphanumerics
    with atomic_path(id_file) as tmp:
        tmp.write_text(run_id)
    return run_id


def build_loggers(cfg: DictConfig, out: Path, identity: RunIdentity) -> list[Any]:
    """Loggers from ``cfg.logger`` (a mapping of name -> instantiable); W&B defaults to offline mode.

    A W&B run is named after the run folder and carries the whole resolved config plus ``cell`` and ``overrides``:
    group the dashboard by ``cell`` to see the mean and spread over seeds.
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    loggers = []
    for name, conf in (cfg.get("logger") or {}).items():
        kwargs: dict[str, Any] = {}
        if name == "wandb":
            kwargs = {"save_dir": str(out), "group": _sweep_group(), "id": _wandb_run_id(out), "resume": "allow",
                      "name": out.name}
        logger = instantiate(conf, **kwargs)
        if name == "wandb":  # the whole resolved config, so runs can be filtered by any setting
            config = OmegaConf.to_container(cfg, resolve=True)
            assert isinstance(config, dict)
            logger.log_hyperparams({**config, **identity_record(identity)})
        loggers.append(logger)
    return loggers


def local_processes(trainer_cfg: Any) -> int:
    """Processes this run starts on this machine: the device count under DDP on CPU, else 1."""
    strategy = trainer_cfg.get("strategy") if trainer_cfg is not None else None
    name = str(strategy.get("_target_", "") if hasattr(strategy, "get") else strategy or "").lower()
    if "ddp" in name and str(trainer_cfg.get("accelerator", "cpu")) == "cpu":
        return max(1, int(trainer_cfg.get("devices", 1)))
    return 1


def share_cores(processes: int = 1) -> int:
    """Give each of a parallel launcher's jobs (and each DDP process of a job) its share of the cores, so
    processes do not oversubscribe threads.

    joblib: the cores over ``n_jobs``; submitit (SLURM or local): ``cpus_per_task`` when set.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n_jobs = 1
    if HydraConfig.initialized():
        launcher = HydraConfig.get().launcher
        if hasattr(launcher, "get"):
            n_jobs = int(launcher.get("n_jobs", 1) or 1)
            cores = min(cores, int(launcher.get("cpus_per_task") or cores))
    n_jobs = cores if n_jobs < 0 else n_jobs  # joblib's -1 = one job per core
    threads = max(1, cores // max(1, n_jobs * processes))
    torch.set_num_threads(threads)
    return threads


def check_choices(cfg: DictConfig, windows: tuple[int, ...] = WINDOWS) -> None:
    """Refuse a window other than those the data accepts (``data.windows`` when the config declares them, a patch
    dataset's own, else the paper's :data:`~slidemap.data.tiling.split.WINDOWS`) with the list of choices, as Hydra does
    for config groups. Imagery of another resolution declares its windows in config, without code changes."""
    check_choice("window", cfg.window, tuple(windows), word="unsupported")


def resolve_precision(requested: str | int, accelerator: str) -> str | int:
    """``auto`` picks the fast path the hardware has: bf16 autocast on CPUs with AMX/AVX512-BF16 and on GPUs
    that support it (fp16 on older GPUs), full fp32 otherwise."""
    if str(requested) != "auto":
        return requested
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32-true"


def run_precision(cfg: DictConfig) -> str | int:
    """The trainer precision: as configured, or for ``auto`` the model's measured choice for this window on CPU
    (``model.auto_precision.cpu``) before the hardware's fast path (:func:`resolve_precision`)."""
    requested = cfg.trainer.get("precision", "auto")
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if str(requested) == "auto" and accelerator == "cpu":
        per_window = (cfg.model.get("auto_precision") or {}).get("cpu") or {}
        if int(cfg.window) in per_window:
            return str(per_window[int(cfg.window)])
    return resolve_precision(requested, accelerator)


def use_channels_last(setting: str | bool, precision: str | int) -> bool:
    """``auto``: NHWC activations with bf16 (oneDNN's fast path, up to 1.5x), NCHW otherwise (in fp32 it gains
    little, and torch 2.14's CPU kernels crash on some small ResU-Net configurations in fp32 NHWC)."""
    if str(setting) == "auto":
        return "bf16" in str(precision)
    return bool(setting)


def resume_checkpoint(out: Path) -> str | None:
    """The last epoch checkpoint of an interrupted run in ``out``, to continue training from it."""
    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    relocate_resume_state(last, out / "checkpoints")
    return str(last)


@torch.no_grad()
def predict_areas(trainer: pl.Trainer, module: LandslideModule,
                  loaders: list[DataLoader]) -> list[list[torch.Tensor]]:
    """Probabilities of every patch of ``loaders`` (the test areas' or some of their patches), batch by batch per
    loader, under the trainer's precision.

    A plain loop in this process (not ``trainer.predict``): under DDP each rank would only see its shard. It runs
    like the test loop (eval mode, inference mode, the same precision context; in one process the same batches),
    so the written maps are the scored ones to the last pixel: under grad mode, bf16 kernels may round differently.
    Under DDP the scored batches are shards, so a bf16 probability right at the threshold may still differ.
    """
    module.eval()
    areas = []
    with torch.inference_mode():
        for loader in loaders:
            batches = []
            for i, batch in enumerate(loader):
                with trainer.precision_plugin.forward_context():
                    batches.append(module.predict_step((batch[0].to(module.device),), i).float().cpu())
            areas.append(batches)
    return areas


def check_scored(results: dict[str, dict[str, Any]]) -> None:
    """Refuse a test whose areas hold no valid pixel: its scores would be numbers without meaning."""
    empty = [a for a, m in results.items() if not sum(int(m.get(k, 0)) for k in ("tp", "fp", "fn", "tn"))]
    if not results or len(empty) == len(results):
        raise InputError("test", "no valid test pixel in any test area (all nodata or NaN in some input channel): "
                                 "nothing can be scored")
    if empty:
        raise InputError(empty[0], "this test area has no valid pixel (all nodata or NaN in some input channel): "
                                   "nothing can be scored")


@torch.no_grad()
def check_network(net: torch.nn.Module, channels: int, window: int, target: str) -> None:
    """Refuse a network that cannot be trained as a segmentation model: no parameters, or not one logit per pixel
    for a window of the data (checked on zeros, in eval mode: no batch statistics change)."""
    if not any(p.requires_grad for p in net.parameters()):
        raise InputError("model.net", f"{target} has no trainable parameters")
    was_training = net.training
    net.eval()
    try:
        out = net(torch.zeros(1, channels, window, window))
    except Exception as err:  # noqa: BLE001 -- any failure here is the configured network's, named in one line
        raise InputError("model.net", f"{target} fails on a 1 x {channels} x {window} x {window} input: "
                                      f"{type(err).__name__}: {' '.join(str(err).split())[:200]}") from err
    finally:
        net.train(was_training)
    shape = tuple(getattr(out, "shape", ()))
    if shape != (1, 1, window, window):
        raise InputError("model.net", f"{target} maps a 1 x {channels} x {window} x {window} input to {shape}; a "
                                      f"segmentation network gives one logit per pixel, (1, 1, {window}, {window})")


def build_module(cfg: DictConfig, datamodule: Any, precision: str | int) -> LandslideModule:
    """The LightningModule from ``cfg.module``, its network from ``cfg.model.net`` (channel counts filled in from
    the data) and its optimiser from ``cfg.optimizer``; the checkpoint keeps the resolved model config."""
    if OmegaConf.is_missing(cfg.model.net, "_target_"):
        raise InputError("model.net._target_", "missing: give the network's class, e.g. "
                                               "'model.net._target_=segmentation_models_pytorch.FPN'")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model_cfg, dict)
    try:
        model_cfg["net"] = net_config(model_cfg["net"], datamodule.in_channels)
    except ValueError as err:
        raise InputError("model.net", str(err)) from err
    model_cfg = with_weights_normaliser(model_cfg, datamodule.checkpoint_info())
    try:
        net = build_net(model_cfg["net"])
    except ValueError as err:
        raise InputError("model.net", str(err)) from err
    apply_encoder_options(net, model_cfg, datamodule.channels)
    check_network(net, datamodule.in_channels, int(cfg.window), str(model_cfg["net"].get("_target_")))
    optimizer = instantiate(cfg.optimizer)
    try:  # a partial: its arguments meet the optimiser only in fit; try them on one parameter now
        optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as err:
        raise InputError("optimizer", f"cannot build {cfg.optimizer.get('_target_')}: {err}") from err
    loss_cfg = OmegaConf.to_container(cfg.loss, resolve=True) if cfg.get("loss") is not None else None
    try:
        loss = build_loss(loss_cfg, cfg.module.get("pos_weight"))
    except ValueError as err:
        raise InputError("loss", str(err)) from err
    # A partial, called with Python objects: Hydra would instantiate the ``_target_`` inside ``model`` again.
    make_module = instantiate(cfg.module, _partial_=True)
    return make_module(net=net, optimizer=optimizer, model=model_cfg, loss=loss,
                       encoder_lr_scale=float(model_cfg.get("encoder_lr_scale") or 1.0),
                       test_areas=datamodule.test_areas,
                       channels_last=use_channels_last(cfg.get("channels_last", "auto"), precision),
                       data_info={**datamodule.checkpoint_info(), "scenario": str(cfg.scenario.name),
                                  "data_kind": data_kind_of(cfg, datamodule)})


def run(cfg: DictConfig) -> float:
    """Train one model x window x scenario in its run directory (see :func:`run_job`)."""
    with distributed_session():
        return run_job(cfg)


def run_job(cfg: DictConfig) -> float:
    """Train and test one model x window x scenario; returns the best validation F1 (for sweepers).

    Re-running into the same directory (e.g. a sweep re-launched with the same ``hydra.sweep.dir``) skips a
    finished run and continues an interrupted one from its last checkpoint (``resume=false`` starts afresh).
    """
    start = time.perf_counter()
    datamodule: Any = instantiate(cfg.data)  # SiteDataModule, Landslide4SenseDataModule, ...: nothing read yet
    check_choices(cfg, datamodule.windows)
    install_hydra_child_command()  # DDP ranks join this run's directory (no-op without DDP)
    threads = share_cores(local_processes(cfg.get("trainer")))
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    identity = run_identity(cfg)
    claim_run_dir(out, identity)
    resume = bool(cfg.get("resume", True))
    done = completed_run(out) if resume else None
    if done is not None:
        log.info("run %s is complete (%s): skipped", out.name, out / METRICS_FILE)
        value = done.get("val_f1")
        return float("nan") if value is None else float(value)
    fit_from = resume_checkpoint(out) if resume else None
    if fit_from:
        log.info("run %s resumes from %s", out.name, fit_from)
    pl.seed_everything(cfg.seed, workers=True)
    torch.use_deterministic_algorithms(True, warn_only=True)

    datamodule.setup()  # reads and checks the data (e.g. window vs test area) before any training
    empty = [a for a, p in zip(datamodule.test_areas, datamodule.test_patch_sets()) if not p.any_valid()]
    if empty:  # found now, not after training: nothing could be scored
        raise InputError(empty[0], "this test area has no valid pixel (all nodata or NaN in some input channel): "
                                   "nothing can be scored")
    precision = run_precision(cfg)
    module = build_module(cfg, datamodule, precision)
    train_sites = datamodule.train_site_names
    try:
        loggers = build_loggers(cfg, out, identity)
    except Exception as err:  # noqa: BLE001 -- a logger's library refusing its settings (a W&B project name, ...)
        if type(err).__module__.split(".")[0] not in ("wandb", "pytorch_lightning", "lightning_fabric"):
            raise
        raise InputError("logger", f"{type(err).__name__}: {' '.join(str(err).split())[:300]}") from err
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    bar = progress_bar(cfg.trainer.get("enable_progress_bar", "auto"))
    callbacks += [] if bar else [EpochLine()]  # a log a cluster user can read, not a stream of bar redraws
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks,
                                      default_root_dir=str(out), precision=precision, enable_progress_bar=bar)
    try:
        test_ckpt = cfg.get("test_ckpt")
        if test_ckpt:  # score a given checkpoint, no training
            ckpt = str(Path(test_ckpt).resolve())
            if not Path(ckpt).is_file():
                raise InputError(test_ckpt, "checkpoint not found (test_ckpt)")
            ended = "not trained"
        else:
            with trainer_setting_errors():
                trainer.fit(module, datamodule=datamodule, ckpt_path=fit_from)
            if trainer.global_step == 0:  # scoring an untrained network would look like a result
                raise InputError(out, "trained zero steps (no training batch, or the run stopped before its first "
                                      "step): nothing to score; check trainer.limit_train_batches and the data")
            ended = stopped_by(trainer)  # now: loading the best checkpoint below restores the callbacks' old state
            ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt_arg = ckpt if ckpt else None
        val = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt_arg, verbose=False)
        val_f1 = float(val[0]["val/f1"]) if val else float("nan")
        refit = bool(test_ckpt) and str(cfg.get("threshold")) == "auto"  # a given checkpoint, threshold fitted here
        if not test_ckpt or refit:  # the best weights are loaded: fit the temperature (and threshold=auto's threshold)
            calibrate(trainer, module, datamodule, None if test_ckpt else ckpt_arg)  # a given checkpoint stays as is
        # the best weights again, or under `refit` the ones loaded above (reloading would bring back the file's fit)
        trainer.test(module, datamodule=datamodule, ckpt_path=None if refit else ckpt_arg, verbose=False)
        check_scored(module.test_results)
        if not trainer.is_global_zero:  # DDP: rank 0 alone writes maps and results
            return val_f1
        predicted: list[list[list[torch.Tensor]]] = []  # what write_test_outputs had predicted, kept for objects

        def predict(loaders: list[Any]) -> list[list[torch.Tensor]]:
            predicted.append(predict_areas(trainer, module, loaders))
            return predicted[-1]

        previews = write_test_outputs(out, datamodule, predict, module.threshold, previews=int(cfg.get("previews", 4)))
        if isinstance(getattr(datamodule, "data", None), PreparedData) and predicted:  # sites: whole test areas
            add_object_scores(module.test_results, site_object_counts(datamodule.data, predicted[0], module.threshold),
                              "test area")
        payload = {
            "model": cfg.model.name, "window": int(cfg.window), "scenario": cfg.scenario.name,
            "inputs": str((cfg.get("inputs") or {}).get("name", "post")), "channels": list(datamodule.channels),
            "augment": str((cfg.get("augment") or {}).get("name", "none")),
            "loss": loss_name(cfg),
            "seed": int(cfg.seed), "epochs": int(trainer.current_epoch), "precision": str(precision),
            "threads": threads, "processes": int(trainer.world_size), "resumed_from": fit_from,
            "wall_time_s": round(time.perf_counter() - start, 2), "best_checkpoint": ckpt,
            "val_f1": val_f1, "train_sites": train_sites, "validation_blocks": datamodule.validation_blocks,
            **({"split": datamodule.split} if datamodule.split is not None else {}),
            **identity_record(identity),
            "stopped_by": ended,
            "threshold": module.threshold, **({"threshold_fit": module.threshold_fit} if module.threshold_fit else {}),
            "areas": module.test_results,
            "calibration": {**(module.calibration or {"temperature": 1.0}), "reliability": module.reliability},
        }
        log_predictions_to_wandb(loggers, module.test_results, previews, module.threshold)
        if ckpt and not test_ckpt:  # the card travels with the checkpoint (before metrics.json marks the run done)
            payload["model_card"] = str(store_card(Path(ckpt), build_card(cfg, module, datamodule, payload)))
        write_metrics(out, payload)  # last: its presence marks the run complete (resume skips it)
        drop_resume_state(out)
        log.info("run %s done in %.1f s: F1 %s", out.name, payload["wall_time_s"],
                 {a: shown(m["f1"]) for a, m in module.test_results.items()})
        return val_f1
    finally:
        finish_wandb(loggers)
