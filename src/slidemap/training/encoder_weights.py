"""The model config's encoder options, applied to a freshly built network before training: pretrained weights
from a local file matched to the data's channels by name (``model.weights``, ``model.weights_bands``), and
``model.freeze_encoder``. Any mismatch is one InputError naming the file and the key."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from slidemap.data.sites.channels import canonical_all
from slidemap.errors import InputError
from slidemap.models.pretrained import WeightsError, freeze, load_encoder, read_state_dict

log = logging.getLogger(__name__)

OPTIONS = ("weights", "weights_bands", "freeze_encoder", "encoder_lr_scale", "new_channel_scale")
"""The model config's keys this module reads (beside ``name`` and ``net``)."""


def apply_encoder_options(net: nn.Module, model: Mapping[str, Any], channels: Sequence[str]) -> dict[str, Any] | None:
    """Load ``model.weights`` into ``net``'s encoder and freeze it where asked; returns what was loaded (None
    without weights)."""
    weights, bands = model.get("weights"), model.get("weights_bands")
    frozen, scale = bool(model.get("freeze_encoder") or False), model.get("encoder_lr_scale", 1.0)
    if bands is not None and not weights:
        raise InputError("model.weights_bands", "given without model.weights (the file of pretrained weights)")
    if not weights and not frozen and scale in (None, 1, 1.0):
        return None
    if not hasattr(net, "encoder_module"):
        key = "model.weights" if weights else "model.freeze_encoder" if frozen else "model.encoder_lr_scale"
        raise InputError(key, f"{type(net).__name__} has no encoder (use model=smp_resnet or another smp model)")
    encoder = net.encoder_module()
    record = None
    if weights:
        if not bands or isinstance(bands, str):
            raise InputError("model.weights_bands", "missing: the bands the weights were trained on, in order, e.g. "
                                                    "[B01,B02,B03,B04,B05,B06,B07,B08,B08A,B09,B10,B11,B12]")
        try:
            names = canonical_all(bands)
        except ValueError as err:
            raise InputError("model.weights_bands", str(err)) from None
        try:
            record = load_encoder(encoder, read_state_dict(weights), names, canonical_all(channels),
                                  float(model.get("new_channel_scale", 1.0)))
        except WeightsError as err:
            raise InputError(weights, str(err)) from None
        log.info("encoder weights from %s (%d tensors): channels %s by name, %s as the mean filter", weights,
                 record["keys"], record["from_weights"] or "none", record["mean_filter"] or "none")
    if frozen:
        log.info("encoder frozen (%d parameter tensors)", freeze(encoder))
    return record
