"""Checkpoints without training, shaped exactly like train.py's: for tests of loading and mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from slidemap.data.tiling.patches import Normaliser
from slidemap.models import build_net
from slidemap.training.module import LandslideModule

CHANNELS = ["B2", "B3", "B4", "B8", "slope"]


def unet_config(in_channels: int = 5, base_filters: int = 4) -> dict[str, Any]:
    """The complete config of a small paper U-Net, as a checkpoint records it."""
    return {"_target_": "slidemap.models.UNet", "in_channels": in_channels, "base_filters": base_filters,
            "out_channels": 1}


def save_checkpoint(path: Path, net_config: dict[str, Any] | None = None, name: str = "unet",
                    channels: list[str] = CHANNELS, normaliser: Normaliser | None = None,
                    window: int = 32) -> Path:
    """A Lightning-shaped checkpoint (state_dict + LandslideModule hyper-parameters) of an untrained network."""
    net_config = net_config or unet_config(len(channels))
    norm = normaliser or Normaliser(tuple(channels), np.zeros(len(channels), np.float32),
                                    np.ones(len(channels), np.float32))
    module = LandslideModule(build_net(net_config), model={"name": name, "net": net_config},
                             data_info={"channels": channels, "window": window, "normaliser": norm.to_dict()})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path
