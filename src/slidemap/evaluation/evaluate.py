"""Evaluate a checkpoint on every site's test area as full mosaics: maps, polygons and metrics.json.

The test areas are those of training (docs/research.md); each is predicted as one mosaic (blended
overlapping tiles by default, or the paper's grid) on its own pixels only, as in training, and scored over
every valid pixel. The network and its normalisation come from the checkpoint; the data settings must
agree with it (same channels, and the scenario's training areas must give the checkpoint's statistics).

``ckpt_path`` may list several checkpoints (an ensemble, e.g. the seeds of one cell) and ``tta`` add test-time
views (:mod:`slidemap.mapping.ensemble`): the maps and scores are then those of the mean calibrated probability,
and the per-pixel standard deviation is written as each area's uncertainty map.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from slidemap.config_checks import check_choice, check_value
from slidemap.data.loading.datamodule import SiteDataModule
from slidemap.data.sites.reader import read_sites
from slidemap.data.sites.site import Site
from slidemap.data.tiling.patches import Normaliser, fit_normaliser
from slidemap.data.tiling.split import SiteSplit, split_sites
from slidemap.errors import InputError
from slidemap.evaluation.calibration import ece, pool_bins, reliability_bins
from slidemap.evaluation.histogram import average_precision, histogram
from slidemap.evaluation.objects import object_counts, object_record, object_scores, pooled_objects
from slidemap.evaluation.scoring import POOLED, area_results, as_number, confusion_counts, shown
from slidemap.mapping.checkpoint import TrainedModel, check_channels, chosen_threshold, load_checkpoint, same_normaliser
from slidemap.mapping.ensemble import Ensemble, check_tta
from slidemap.mapping.maps import map_area, pick_device
from slidemap.mapping.mosaic import MODES
from slidemap.mapping.provenance import check_synthetic_model
from slidemap.mapping.tiles import check_tile
from slidemap.mapping.unit_guard import check_areas
from slidemap.runs import job_overrides, output_dir, override_key, write_metrics

log = logging.getLogger(__name__)


def _settings(cfg: DictConfig) -> tuple[list[str], str, float]:
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise InputError("ckpt_path", "no checkpoint given: python eval.py ckpt_path=RUN_DIR/checkpoints/best.ckpt")
    check_tta(str(cfg.get("tta", "none")), "tta")
    paths = [str(p) for p in cfg.ckpt_path] if isinstance(cfg.ckpt_path, (list, ListConfig)) else [str(cfg.ckpt_path)]
    mode = str(check_choice("inference", str(cfg.inference), MODES))
    if mode == "grid" and any(override_key(o) == "overlap" for o in job_overrides()):
        raise InputError("overlap", "goes with inference=blend (the paper's grid does not overlap)")
    return paths, mode, check_value("overlap", cfg.overlap)


def _fmt(norm: Normaliser) -> str:
    return ", ".join(f"{c} {m:.4g}+-{s:.3g}" for c, m, s in zip(norm.channels, norm.mean, norm.std))


def check_normaliser(model: TrainedModel | Ensemble, sites: dict[str, Site], splits: dict[str, SiteSplit],
                     train_sites: list[str], scenario: str, root: Path) -> None:
    """Refuse data whose training areas (of this scenario) do not give the checkpoint's normalisation.

    The statistics identify what a model was trained on: other statistics mean other data or another
    scenario, and metrics on them would silently be a transfer experiment. The message names the sites whose
    training areas do match, when some combination of one or all sites does.
    """
    def fitted(names: list[str]) -> Normaliser:
        return fit_normaliser([(sites[s], splits[s].train) for s in names], model.channels)

    here = fitted(train_sites)
    if same_normaliser(here, model.normaliser):
        return
    candidates = [list(sites)] + [[s] for s in sites]
    match = next((c for c in candidates if c != train_sites and same_normaliser(fitted(c), model.normaliser)), None)
    hint = (f"it matches the training areas of {match}: evaluate with the scenario that trains on them"
            if match else "it was trained on other data")
    raise InputError(model.path, f"normalisation mismatch: the checkpoint's statistics ({_fmt(model.normaliser)}) "
                                 f"differ from those of the training areas of scenario '{scenario}' "
                                 f"{train_sites} in {root} ({_fmt(here)}); {hint} "
                                 "(or set check_normaliser=false to evaluate it on this data anyway)")


def run(cfg: DictConfig) -> float:
    """Predict and score every test area; write maps, polygons and metrics.json. Returns the pooled F1."""
    start = time.perf_counter()
    ckpt_paths, mode, overlap = _settings(cfg)
    members = [load_checkpoint(p) for p in ckpt_paths]
    if not cfg.get("calibrated", True):  # the networks' raw sigmoid, to measure what calibration changes
        members = [dataclasses.replace(m, temperature=1.0) for m in members]
    model = Ensemble(members, str(cfg.get("tta", "none")))
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    datamodule = instantiate(cfg.data, window=model.window)  # the data settings, as training builds them
    if not isinstance(datamodule, SiteDataModule):
        raise InputError(getattr(datamodule, "root", None), "eval.py maps and scores site test areas; "
                         "patch datasets (Landslide4Sense, data=patches) are scored by train.py (metrics.json): "
                         "rescore a checkpoint with python train.py data=landslide4sense test_ckpt=CKPT")
    check_channels(model, datamodule.channels, "data.channels")
    datamodule.prepare_data()
    sites = read_sites(datamodule.root, datamodule.site_names)
    splits = split_sites(sites)
    train_sites = datamodule.train_sites if datamodule.train_sites is not None else list(sites)
    unknown = [s for s in train_sites if s not in sites]
    if unknown:
        raise InputError(None, f"unknown training site(s) {unknown}; known sites: {', '.join(sorted(sites))}")
    if cfg.check_normaliser:
        check_normaliser(model, sites, splits, train_sites, str(cfg.scenario.name), datamodule.root)
    check_areas(model, {name: (site, splits[name].test) for name, site in sites.items()})
    synthetic = [check_synthetic_model(model, site.meta, site.meta.get("path", name),
                                       bool(cfg.get("allow_synthetic_model", False))) for name, site in sites.items()]
    model.to(pick_device(str(cfg.device)))
    tile = model.window if cfg.tile is None else check_tile(cfg.tile, "tile")
    threshold = chosen_threshold(model, None if cfg.threshold is None else check_value("threshold", cfg.threshold))

    counts: dict[str, dict[str, int]] = {}
    objects: dict[str, dict[str, Any]] = {}
    bins: dict[str, dict[str, list[float]]] = {}
    hists: dict[str, torch.Tensor] = {}
    spread: dict[str, float] = {}
    for name, site in sites.items():
        block = splits[name].test
        result = map_area(model, site, out, block, mode=mode, overlap=overlap, tile=tile, threshold=threshold,
                          batch_size=int(cfg.batch_size), synthetic_model=any(synthetic))
        label = site.label[block.slices]
        valid = site.valid[block.slices]
        counts[name] = confusion_counts(result.binary == 1, label, valid)
        objects[name] = object_counts(result.binary, label, valid)
        bins[name] = reliability_bins(result.probability, label, valid)
        ok = valid & np.isfinite(result.probability)
        hists[name] = histogram(torch.from_numpy(result.probability[ok]), torch.from_numpy(label[ok].astype(np.int64)))
        if result.uncertainty is not None:
            spread[name] = float(np.nanmean(np.where(valid, result.uncertainty, np.nan)))
    bins[POOLED] = pool_bins(list(bins.values()))
    areas = area_results(counts)
    hists[POOLED] = sum(hists.values())
    for name in areas:
        areas[name]["ece"] = ece(bins[name])
        areas[name]["average_precision"] = average_precision(hists[name].numpy())  # threshold-free
        if name in spread:
            areas[name]["mean_uncertainty"] = spread[name]
    for name, oc in objects.items():
        log.info("%s: F1 %s (P %s, R %s); %d of %d landslides hit, %d of %d polygons false alarms", name,
                 *(shown(areas[name][k]) for k in ("f1", "precision", "recall")), oc["landslides_hit"],
                 oc["landslides"], oc["false_alarms"], oc["polygons"])
    for name, oc in [*objects.items(), (POOLED, pooled_objects(list(objects.values())))]:
        areas[name]["objects"] = object_record(oc)  # as in a training run's metrics.json
    objects = {**{name: object_scores(oc) for name, oc in objects.items()},
               POOLED: object_scores(pooled_objects(list(objects.values())))}
    payload = {
        "model": model.model_name, "window": model.window, "scenario": str(cfg.scenario.name),
        "checkpoint": str(model.path.resolve()), "checkpoints": [str(m.path.resolve()) for m in members],
        "tta": model.tta, "inference": mode, "tile": tile,
        "overlap": overlap if mode == "blend" else None, "threshold": threshold, "channels": list(model.channels),
        "data_root": str(Path(datamodule.root).resolve()), "train_sites": list(train_sites),
        "wall_time_s": round(time.perf_counter() - start, 2), "areas": areas, "objects": objects,
        "calibration": {"temperatures": [m.temperature for m in members], "reliability": bins},
    }
    write_metrics(out, payload)
    log.info("evaluated %s (%s) in %.1f s: F1 %s -> %s", model.path, mode, payload["wall_time_s"],
             {a: shown(m["f1"]) for a, m in areas.items()}, out)
    return as_number(areas[POOLED]["f1"])

