"""Build a finished run's model card and store it in ``best.ckpt`` and as ``model_card.md`` beside it.

A responder handed a checkpoint must be able to tell what it is: which data trained it (kind, folder, a fingerprint of
its files), on which channels in which units, with which recipe, how it is calibrated and how it scored. The card is
written once the test scores exist (after the checkpoint itself), as the temperature is (:mod:`.calibrate`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from slidemap.io import atomic_path
from slidemap.mapping.model_card import CARD_KEY, card_markdown
from slidemap.training.encoder_weights import CARD_RECORD

CARD_FILE = "model_card.md"
EDGE_BYTES = 1 << 20
"""A file's fingerprint reads its first and last MiB and its size: a dataset of thousands of patches is
fingerprinted in seconds, and any re-export, truncation or edit of a file's header or tail changes it."""


def files_fingerprint(files: list[Path], root: Path) -> tuple[str, int]:
    """(SHA-256 over each file's path below ``root``, size and first/last MiB; 16 hex digits, number of files)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root)}\0{size}\0".encode())
        with open(path, "rb") as f:
            digest.update(f.read(EDGE_BYTES))
            if size > 2 * EDGE_BYTES:
                f.seek(-EDGE_BYTES, 2)
                digest.update(f.read(EDGE_BYTES))
    return digest.hexdigest()[:16], len(files)


def _is_synthetic_site(folder: Path) -> bool:
    """A site written by ``slidemap synth``: its site.yaml records the generator."""
    try:
        meta = yaml.safe_load((folder / "site.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(meta, dict) and "synthetic" in meta


def data_kind_of(cfg: DictConfig, datamodule: Any) -> str:
    """synthetic | sites | landslide4sense | patches: what the run trains on (every checkpoint records it from its
    first save, so even an interrupted run's ``last.ckpt`` cannot pass a synthetic model off as unknown)."""
    target = str(cfg.data.get("_target_", ""))
    if target.endswith("Landslide4SenseDataModule"):
        return "landslide4sense"
    if target.endswith("PatchFolderDataModule"):
        return "patches"
    folders = [Path(datamodule.root) / s for s in datamodule.train_site_names]
    return "synthetic" if folders and all(_is_synthetic_site(f) for f in folders) else "sites"


def data_record(cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
    """What trained the model: kind (synthetic | sites | landslide4sense | patches), root, name, training sites
    and patches, and a fingerprint of the files it read."""
    root = Path(datamodule.root).resolve()
    sites = list(datamodule.train_site_names)
    kind = data_kind_of(cfg, datamodule)
    if kind in ("landslide4sense", "patches"):
        files = [p for p in root.rglob("*") if p.is_file()]
        name = "Landslide4Sense" if kind == "landslide4sense" else str(getattr(datamodule, "test_areas",
                                                                                 [root.name])[0])
    else:
        name = root.name
        files = [p for f in (root / s for s in sites) for p in f.rglob("*") if p.is_file()]
    fingerprint, count = files_fingerprint(files, root)
    return {"kind": kind, "root": str(root), "name": name, "train_sites": sites,
            "train_patches": len(datamodule.data.train), "fingerprint": fingerprint, "files": count}


def build_card(cfg: DictConfig, module: Any, datamodule: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """The card of a finished run from its config, module, data and metrics.json payload."""
    info = datamodule.checkpoint_info()
    net_cfg = dict(module.hparams["model"]["net"])
    norm, dist = info["normaliser"], info.get("distribution") or {}
    medians = [q[dist["percentiles"].index(50)] for q in dist["quantiles"]] if dist else [float("nan")] * len(
        info["channels"])
    channels = [{"name": c, "unit": u, "mean": float(m), "sd": float(s), "median": float(md)}
                for c, u, m, s, md in zip(info["channels"], info["units"], norm["mean"], norm["std"], medians)]
    optimizer = OmegaConf.to_container(cfg.optimizer, resolve=True)
    assert isinstance(optimizer, dict)
    all_area = payload["areas"].get("all", {})
    return {
        "name": f"{payload['cell']} seed {payload['seed']}",
        "network": {"class": net_cfg.pop("_target_", "?"), "arguments": net_cfg,
                    "parameters": int(sum(p.numel() for p in module.net.parameters()))},
        "inputs": {"window": int(info["window"]), "channels": channels,
                   **({"encoder_normaliser": module.hparams["model"][CARD_RECORD]}
                      if CARD_RECORD in module.hparams["model"] else {})},
        "data": data_record(cfg, datamodule),
        "training": {"loss": payload.get("loss", "bce"), "pos_weight": module.hparams.get("pos_weight"),
                     "optimizer": optimizer.get("_target_"), "lr": optimizer.get("lr"),
                     "betas": optimizer.get("betas"), "augment": payload["augment"], "seed": payload["seed"],
                     "epochs": payload["epochs"], "stopped_by": payload["stopped_by"],
                     "precision": payload["precision"], "overrides": payload.get("overrides", [])},
        "calibration": {"temperature": payload["calibration"].get("temperature", 1.0),
                        "ece": all_area.get("ece"), "ece_uncalibrated": all_area.get("ece_uncalibrated")},
        "threshold": float(payload.get("threshold", cfg.threshold)),
        "scores": {a: {k: m.get(k) for k in ("precision", "recall", "f1", "iou", "mcc", "average_precision")}
                   for a, m in payload["areas"].items()},
    }


def store_card(ckpt: Path, card: dict[str, Any]) -> Path:
    """Write ``card`` into the checkpoint (``hyper_parameters["card"]``, atomically) and ``model_card.md`` beside
    it; returns the Markdown file's path."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state.setdefault("hyper_parameters", {})[CARD_KEY] = card
    with atomic_path(ckpt) as tmp:
        torch.save(state, tmp)
    md = ckpt.parent / CARD_FILE
    with atomic_path(md) as tmp:
        tmp.write_text(card_markdown(card, ckpt))
    return md
