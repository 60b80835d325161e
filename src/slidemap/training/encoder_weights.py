"""The model config's encoder options, applied to a freshly built network before training: pretrained weights
from a local file matched to the data's channels by name (``model.weights``, ``model.weights_bands``), and
``model.freeze_encoder``; the weights' normaliser from their card (``model.weights_card``) as a fixed map in front
of the encoder. Any mismatch is one InputError naming the file and the key."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from slidemap.data.sites.channels import PRE_SUFFIX, canonical_all, is_band
from slidemap.errors import InputError
from slidemap.models.pretrained import WeightsError, freeze, load_encoder, read_state_dict, repeated
from slidemap.training.weights_card import input_affine, read_card

log = logging.getLogger(__name__)

OPTIONS = ("weights", "weights_bands", "weights_card", "freeze_encoder", "encoder_lr_scale", "new_channel_scale")
"""The model config's keys this module reads (beside ``name`` and ``net``)."""


def pre_event_bands(channels: Sequence[str]) -> dict[str, str]:
    """Pre-event bands and the band each is on the other date (``blue_pre`` -> ``blue``): they take that band's
    pretrained filter and normaliser, as the post-event band does."""
    return {c: c[: -len(PRE_SUFFIX)] for c in channels if c.endswith(PRE_SUFFIX) and is_band(c[: -len(PRE_SUFFIX)])}


CARD_RECORD = "weights_card_record"
"""Key of the model config (kept in the checkpoint) recording which channels the weights' card normalises."""
AFFINE_TARGETS = ("slidemap.models.SmpModel", "slidemap.models.smp_models.SmpModel")


def with_weights_normaliser(model: dict[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """``model`` (a resolved model config with its ``net``) with the weights' card folded into the network's
    ``input_scale``/``input_shift`` (:mod:`slidemap.training.weights_card`); unchanged without a card."""
    card = model.get("weights_card")
    if not card:
        return model
    if not model.get("weights"):
        raise InputError("model.weights_card", "given without model.weights (the card describes those weights)")
    if model["net"].get("_target_") not in AFFINE_TARGETS:
        raise InputError("model.weights_card", f"{model['net'].get('_target_')} takes no input normaliser (use "
                                               "model=smp_resnet)")
    scale, shift, record = input_affine(read_card(card, model.get("weights_bands")), info,
                                        pre_event_bands(canonical_all(info["channels"])))
    log.info("the weights' normaliser from %s for %s (train statistics for %s)", card, record["from_card"],
             record["from_train"] or "none")
    return {**model, "net": {**model["net"], "input_scale": scale, "input_shift": shift}, CARD_RECORD: record}


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
        if isinstance(bands, str):
            raise InputError("model.weights_bands", f"must be a list of the bands the weights were trained on, in "
                                                    f"order, e.g. '[B02,B03,B04,B08]', got {bands!r}")
        if not bands:
            raise InputError("model.weights_bands", "missing: the bands the weights were trained on, in order, e.g. "
                                                    "[B01,B02,B03,B04,B05,B06,B07,B08,B08A,B09,B10,B11,B12]")
        try:
            names = canonical_all(bands)
        except ValueError as err:
            raise InputError("model.weights_bands", str(err)) from None
        twice = repeated(names)
        if twice:
            raise InputError("model.weights_bands", f"names {twice} twice")
        inputs = canonical_all(channels)
        try:
            record = load_encoder(encoder, read_state_dict(weights), names, inputs,
                                  float(model.get("new_channel_scale", 1.0)), pre_event_bands(inputs))
        except WeightsError as err:
            raise InputError(weights, err.problem if err.key == str(weights) else str(err)) from None
        log.info("encoder weights from %s (%d tensors): channels %s by name, %s as the mean filter", weights,
                 record["keys"], record["from_weights"] or "none", record["mean_filter"] or "none")
    if frozen:
        if not weights:
            log.warning("model.freeze_encoder=true without model.weights: the encoder stays at its random "
                        "initialisation and only the decoder learns")
        log.info("encoder frozen (%d parameter tensors; batch-norm running statistics still follow the training "
                 "data)", freeze(encoder))
    return record
