"""Look models up by name: the one table that maps a config's model name to its class."""

from __future__ import annotations

from typing import Any

from torch import nn

from slidemap.models.resunet import ResUNet
from slidemap.models.smp_models import SmpModel
from slidemap.models.unet import UNet

__all__ = ["ALIASES", "MODELS", "build_model"]

MODELS: dict[str, type[nn.Module]] = {"unet": UNet, "resunet": ResUNet, "smp": SmpModel}

ALIASES: dict[str, str] = {"smp_unet": "smp"}
"""Hydra model-config names (what checkpoints record as ``model_name``) that build a registered class: the
smp architecture itself is in the recorded constructor arguments."""


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with ``kwargs`` (e.g. a checkpoint's ``hparams_dict``).

    Raises:
        ValueError: ``name`` is not registered; the message lists the known names.
    """
    try:
        cls = MODELS[ALIASES.get(name.lower(), name.lower())]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None
    return cls(**kwargs)
