"""Pretrained encoder weights from a local file, matched to the model's input channels by name.

The reference layout is torchgeo's Sentinel-2 ResNet weights (SSL4EO-S12 MoCo/DINO/..., 13 bands B01..B12): a
plain state dict with timm's ResNet keys (``conv1.weight`` [64, 13, 7, 7], ``bn1.*``, ``layer1..4.*``, ``fc.*``),
which are also the keys of segmentation-models-pytorch's ResNet encoders. The first convolution's input filters
are taken by channel name for the channels both have; a channel the weights lack (slope, dem, ndvi, ...) gets the
mean of the weights' filters over all their bands, times ``new_channel_scale``. The classifier (``fc.*``) is left
out. Every other mismatch (a key the encoder lacks or misses, a shape, a band count) is refused, never zero-filled.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

FIRST_CONV = "conv1.weight"
"""The encoder's first convolution: (filters, bands, k, k)."""

HEAD_PREFIXES = ("fc.",)
"""Keys of the classification head the pretrained network had; a segmentation encoder has none."""


class WeightsError(ValueError):
    """A pretrained file that does not fit the encoder; ``key`` names what does not fit."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict (name -> tensor) from ``path``; a ``{"state_dict": ...}`` wrapper is unwrapped."""
    try:
        raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(str(path), "no such file") from None
    except IsADirectoryError:
        raise WeightsError(str(path), "is a folder, not a weights file") from None
    except pickle.UnpicklingError:  # weights_only refuses pickled Python objects: a whole model, not its state dict
        raise WeightsError(str(path), "holds pickled Python objects, not a plain state dict of tensors (save "
                                      "model.state_dict(), as torchgeo publishes its weights)") from None
    except Exception as err:  # noqa: BLE001 -- a damaged file can fail anywhere in the unpickler
        first = (str(err).strip().splitlines() or [""])[0]
        raise WeightsError(str(path), f"not a PyTorch state dict: {type(err).__name__}: {first}"[:200]) from None
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(str(path), "not a state dict of tensors (torchgeo/timm layout: conv1.weight, bn1.*, "
                                      "layer1..4.*)")
    for key, value in raw.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise WeightsError(str(key), f"holds {int((~torch.isfinite(value)).sum())} NaN or infinite value(s): "
                                         "damaged weights")
    return {str(k): v for k, v in raw.items()}


def repeated(names: Sequence[str]) -> str | None:
    """The first (in sorted order) name that occurs more than once, or None."""
    twice = sorted({n for n in names if list(names).count(n) > 1})
    return twice[0] if twice else None


def first_conv_filters(weight: torch.Tensor, weights_bands: Sequence[str], channels: Sequence[str],
                       new_channel_scale: float = 1.0, same_band: Mapping[str, str] | None = None) -> torch.Tensor:
    """The first convolution's weight for ``channels``: each channel's filter copied from the band of that name in
    ``weight`` (filters, len(weights_bands), k, k), or of the band ``same_band`` names for it (a pre-event band is
    the same band on another date); a channel the weights lack gets their mean filter, scaled."""
    if weight.ndim != 4 or weight.shape[1] != len(weights_bands):
        raise WeightsError(FIRST_CONV, f"has shape {tuple(weight.shape)}, but model.weights_bands names "
                                       f"{len(weights_bands)} bands")
    twice = repeated(weights_bands)
    if twice:
        raise WeightsError("model.weights_bands", f"names {twice} twice")
    mean = weight.mean(dim=1) * float(new_channel_scale)
    index = {band: i for i, band in enumerate(weights_bands)}
    source = [band_for(c, index, same_band) for c in channels]
    return torch.stack([weight[:, index[b]] if b is not None else mean for b in source], dim=1)


def band_for(channel: str, bands: Mapping[str, int] | Sequence[str], same_band: Mapping[str, str] | None) -> str | None:
    """The weights' band a channel takes its filter from: its own name, else the band ``same_band`` gives; None."""
    if channel in bands:
        return channel
    other = (same_band or {}).get(channel)
    return other if other in bands else None


def load_encoder(encoder: nn.Module, state: Mapping[str, torch.Tensor], weights_bands: Sequence[str],
                 channels: Sequence[str], new_channel_scale: float = 1.0,
                 same_band: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Load ``state`` into ``encoder`` (every key but the head's must fit by name and shape), the first
    convolution's filters by channel name; returns what was done (for the log and the model card).

    Raises:
        WeightsError: naming the first key that does not fit.
    """
    own = encoder.state_dict()
    if FIRST_CONV not in own:
        raise WeightsError(FIRST_CONV, f"{type(encoder).__name__} has no first convolution of that name: pretrained "
                                       "weights fit ResNet encoders (smp encoder_name resnet18/34/50...)")
    if FIRST_CONV not in state:
        raise WeightsError(FIRST_CONV, "missing from the weights file: not a ResNet state dict in timm layout")
    body = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    unknown = [k for k in body if k not in own]
    if unknown:  # first: another architecture is named by its keys, before any shape
        raise WeightsError(unknown[0], f"unknown key: {type(encoder).__name__} has no such parameter "
                                       f"({len(unknown)} unknown key(s): weights of another architecture?)")
    loaded = {}
    for key, value in body.items():
        if key == FIRST_CONV:
            value = first_conv_filters(value, weights_bands, channels, new_channel_scale, same_band)
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(key, f"has shape {tuple(value.shape)} in the weights but {tuple(own[key].shape)} "
                                    "in the encoder (weights of another architecture or depth?)")
        loaded[key] = value.to(own[key].dtype)
    missing = [k for k in own if k not in loaded and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(missing[0], f"missing from the weights file ({len(missing)} encoder key(s) missing): "
                                       "weights of another architecture or depth?")
    encoder.load_state_dict(loaded, strict=False)
    taken = [c for c in channels if band_for(c, weights_bands, same_band) is not None]
    return {"keys": len(loaded), "from_weights": taken, "mean_filter": [c for c in channels if c not in taken]}


def freeze(module: nn.Module) -> int:
    """Stop gradients into ``module``'s parameters; returns how many tensors were frozen. (Batch-norm running
    statistics, buffers, still follow the training data.)"""
    params = list(module.parameters())
    for p in params:
        p.requires_grad_(False)
    return len(params)
