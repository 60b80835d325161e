"""The normaliser pretrained weights expect, from their card (``model.weights_card``), folded into the network.

Pretrained encoders were trained on inputs normalised one way: torchgeo's SSL4EO-S12 Sentinel-2 ResNets divide
Level-1C digital numbers by 10000 (``Normalize(mean=0, std=10000)``), i.e. they see reflectance as it is; others
subtract per-band means. slidemap's data keep their own normaliser (the train split's mean and deviation, which the
checkpoint, the units guard and every map use), and the network gets a fixed per-channel affine map in front of its
encoder (``SmpModel(input_scale, input_shift)``) that turns slidemap's normalised value ``z = (x - m) / s`` into
the weights' ``(x - m_w) / s_w``: ``z * s / s_w + (m - m_w) / s_w``. Exact for every pixel, travels inside the
checkpoint and the ONNX export, and changes nothing for channels the card does not name (scale 1, shift 0).

A card is a small YAML (or JSON) file written from the weights' documentation::

    source: torchgeo ResNet18_Weights.SENTINEL2_ALL_MOCO (transforms: Normalize(mean=0, std=10000))
    bands: [B01, B02, B03, B04, B05, B06, B07, B08, B08A, B09, B10, B11, B12]  # default: model.weights_bands
    units: dn        # dn (digital numbers, reflectance x scale) or reflectance
    scale: 10000     # digital numbers per unit of reflectance (units: dn)
    mean: 0          # one value, or one per band, in `units`
    std: 10000

The statistics are converted to the contract's unit (reflectance, docs/data.md "Units and the units guard") by
dividing by ``scale``.
Channels in another unit (8-bit renderings, degrees, metres) cannot take reflectance statistics: refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slidemap.data.sites.channels import canonical_all
from slidemap.data.sites.units import REFLECTANCE
from slidemap.errors import InputError
from slidemap.models.pretrained import repeated

CARD_UNITS = ("dn", REFLECTANCE)
"""The units a card's statistics may be given in."""
KEYS = ("source", "bands", "units", "scale", "mean", "std")


@dataclass(frozen=True)
class WeightsCard:
    """Per-band mean and deviation the weights expect, in reflectance (the contract's unit)."""

    path: str
    source: str
    mean: dict[str, float]
    std: dict[str, float]


def _number(value: Any, key: str, path: str) -> float:
    """One finite number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(path, f"'{key}' must be finite numbers, got {value!r}")
    return float(value)


def _numbers(raw: Any, bands: Sequence[str], key: str, path: str) -> list[float]:
    values = raw if isinstance(raw, list) else [raw] * len(bands)
    if len(values) != len(bands):
        raise InputError(path, f"'{key}' has {len(values)} values for {len(bands)} bands (give one, or one per band)")
    return [_number(v, key, path) for v in values]


def read_card(path: str | Path, weights_bands: Sequence[str] | None) -> WeightsCard:
    """The card at ``path``, its statistics in reflectance; one InputError naming the file and key otherwise."""
    where = str(path)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise InputError(where, f"cannot read the weights' card: {err.strerror or err}") from None
    try:
        raw = json.loads(text) if where.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise InputError(where, f"not a YAML/JSON card: {' '.join(str(err).split())[:160]}") from None
    if not isinstance(raw, Mapping):
        raise InputError(where, "a weights' card is a mapping with keys " + ", ".join(KEYS))
    unknown = sorted(set(map(str, raw)) - set(KEYS))
    if unknown:
        raise InputError(where, f"unknown key '{unknown[0]}' (a card has {', '.join(KEYS)})")
    for key in ("mean", "std", "units"):
        if raw.get(key) is None:
            raise InputError(where, f"'{key}' missing: the card must say the statistics and their unit")
    bands = raw.get("bands") if raw.get("bands") is not None else weights_bands
    if isinstance(bands, str):
        raise InputError(where, f"'bands' must be a list of band names, e.g. [B02, B03], got {bands!r}")
    if not bands:
        raise InputError(where, "'bands' missing (and no model.weights_bands): the bands the statistics are for")
    try:
        names = canonical_all([str(b) for b in bands])
    except ValueError as err:
        raise InputError(where, f"'bands': {err}") from None
    twice = repeated(names)
    if twice:
        raise InputError(where, f"'bands' names {twice} twice (as {[str(b) for b in bands]})")
    units = str(raw["units"])
    if units not in CARD_UNITS:
        raise InputError(where, f"'units' is {units!r}; expected one of {', '.join(CARD_UNITS)}")
    if units == "dn" and raw.get("scale") is None:
        raise InputError(where, "'scale' missing: units dn need the digital numbers per unit of reflectance "
                                "(10000 for Sentinel-2 Level-1C/2A)")
    if units != "dn" and raw.get("scale") is not None:
        raise InputError(where, f"'scale' is for units dn; statistics in {units} take none")
    scale = _number(raw["scale"], "scale", where) if units == "dn" else 1.0
    if scale <= 0:
        raise InputError(where, f"'scale' must be a positive number, got {raw.get('scale')!r}")
    mean = _numbers(raw["mean"], names, "mean", where)
    std = _numbers(raw["std"], names, "std", where)
    if min(std) <= 0:
        raise InputError(where, f"'std' must be positive, got {raw['std']!r}")
    return WeightsCard(where, str(raw.get("source") or "not given"),
                       {b: m / scale for b, m in zip(names, mean)}, {b: s / scale for b, s in zip(names, std)})


def input_affine(card: WeightsCard, info: Mapping[str, Any], same_band: Mapping[str, str] | None = None,
                 ) -> tuple[list[float], list[float], dict[str, Any]]:
    """The per-channel (scale, shift) that turns slidemap's normalised inputs into the card's, and the record of
    what was done; ``info`` is the datamodule's checkpoint info (channels, units, normaliser, normalise);
    ``same_band`` names the card's band for channels of another name (a pre-event band: the same band)."""
    if info.get("normalise") == "per_patch":
        raise InputError(card.path, "the data are standardised per patch (dataset.yaml normalise: per_patch): the "
                                    "absolute values the weights' normaliser needs are gone; leave "
                                    "model.weights_card unset")
    channels = canonical_all(info["channels"])
    norm = info["normaliser"]
    scale, shift, taken = [], [], {}  # taken: channel -> the card's band it takes
    for channel, unit, m, s in zip(channels, info["units"], norm["mean"], norm["std"]):
        band = channel if channel in card.mean else (same_band or {}).get(channel)
        if band not in card.mean:
            scale.append(1.0)
            shift.append(0.0)
            continue
        if unit != REFLECTANCE:
            raise InputError(card.path, f"channel {channel} is in {unit}, but the card's statistics are reflectance: "
                                        "they cannot apply (leave model.weights_card unset, or give the data in "
                                        "reflectance)")
        scale.append(float(s) / card.std[band])
        shift.append((float(m) - card.mean[band]) / card.std[band])
        taken[channel] = band
    if not taken:
        raise InputError(card.path, f"names none of the input channels {list(channels)}: nothing to normalise as "
                                    f"the weights expect (card bands: {sorted(card.mean)})")
    record = {"card": card.path, "source": card.source, "from_card": list(taken),
              "from_train": [c for c in channels if c not in taken],
              "mean": {c: card.mean[b] for c, b in taken.items()}, "std": {c: card.std[b] for c, b in taken.items()}}
    return scale, shift, record
