"""What an exported ONNX model says of itself: the facts mapping needs, as the model's ``metadata_props``.

An ONNX file travels without its checkpoints, so everything a checkpoint tells ``slidemap map`` travels in it: the
input channels, their units and training distribution (the units guard), the normaliser (the input is the normalised
stack), each member's temperature, threshold, card and data kind (the synthetic-model guard), and the fingerprints of
the checkpoints it came from (provenance). Values are strings (ONNX metadata is string -> string); structured ones
are JSON. The flat keys (channels, units, normaliser, temperature, threshold) are for people and other tools
(Netron, ``onnx.load(...).metadata_props``); ``slidemap.members`` holds each member's full record, which mapping
reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slidemap.data.sites.units import Distribution
from slidemap.data.tiling.patches import Normaliser
from slidemap.errors import InputError
from slidemap.mapping.checkpoint import TrainedModel, read_units

PREFIX = "slidemap."
FORMAT = "1"
INPUT_NAME = "input"
OUTPUT_NAMES = ("probability", "sd")
TILE_MULTIPLE = 32
"""Tile heights and widths the exported graph takes: multiples of the networks' total stride (16 for the U-Net, 8 for
the ResU-Net; this for a network that does not say, or members that differ). The networks pad other sizes inside, a
branch that tracing fixes to the no-padding case; :class:`~slidemap.mapping.onnx_engine.OnnxModel` pads such tiles
itself, as the networks do. Mapping's tiles are multiples of 32 px anyway."""
INPUT_DOC = ("float32 (N, C, H, W): the channels in this order, each (value - mean) / std with the normaliser below, "
             "0 at no-data pixels; H and W any multiples of tile_multiple")
OUTPUT_DOC = ("probability: float32 (N, 1, H, W), the mean over members of sigmoid(logit / temperature); sd (an "
              "ensemble's only): their population standard deviation")


@dataclass(frozen=True, eq=False)
class OnnxMember:
    """One checkpoint inside an exported model: what the guards and the provenance tags read of a checkpoint.

    ``path`` is the ONNX file (errors name the file the user gave); ``checkpoint`` and ``fingerprint`` are those of
    the checkpoint it was exported from."""

    path: Path
    checkpoint: str
    fingerprint: str
    model_name: str
    channels: tuple[str, ...]
    window: int
    threshold: float
    temperature: float
    units: tuple[str, ...] | None
    distribution: Distribution | None
    card: dict[str, Any] | None
    data_kind: str | None


def member_record(model: TrainedModel, fingerprint: str) -> dict[str, Any]:
    """A checkpoint's facts as JSON-ready values (``slidemap.members``)."""
    return {"checkpoint": str(Path(model.path).resolve()), "fingerprint": fingerprint, "name": model.model_name,
            "network": type(model.net).__name__, "window": model.window, "temperature": model.temperature,
            "threshold": model.threshold, "units": list(model.units) if model.units else None,
            "distribution": model.distribution.to_dict() if model.distribution else None,
            "data_kind": model.data_kind, "card": model.card}


def tile_multiple(models: list[TrainedModel]) -> int:
    """The members' common total stride (``output_stride``), else :data:`TILE_MULTIPLE`."""
    strides = {getattr(m.net, "output_stride", None) for m in models}
    stride = strides.pop() if len(strides) == 1 else None
    return int(stride) if isinstance(stride, int) and stride > 0 else TILE_MULTIPLE


def metadata(models: list[TrainedModel], fingerprints: list[str], extra: dict[str, str]) -> dict[str, str]:
    """The ``metadata_props`` of an export of ``models`` (one, or an ensemble's members)."""
    first = models[0]
    thresholds = sorted({m.threshold for m in models})
    props = {
        "format": FORMAT,
        "input": INPUT_DOC,
        "outputs": OUTPUT_DOC,
        "channels": json.dumps(list(first.channels)),
        "units": json.dumps(list(first.units) if first.units else None),
        "normaliser": json.dumps(first.normaliser.to_dict()),
        "window": str(first.window),
        "tile_multiple": str(tile_multiple(models)),
        "temperature": json.dumps([m.temperature for m in models]),
        "threshold": json.dumps(thresholds[0] if len(thresholds) == 1 else [m.threshold for m in models]),
        "ensemble_members": str(len(models)),
        "members": json.dumps([member_record(m, f) for m, f in zip(models, fingerprints)], default=str),
        **extra,
    }
    return {PREFIX + k: v for k, v in props.items()}


def _json(props: dict[str, str], key: str, path: Path) -> Any:
    if PREFIX + key not in props:
        raise InputError(path, f"not a slidemap ONNX model: metadata '{PREFIX}{key}' is missing (models are written "
                               "by slidemap export)")
    try:
        return json.loads(props[PREFIX + key])
    except ValueError as err:
        raise InputError(path, f"malformed metadata '{PREFIX}{key}': {err}") from err


def read_normaliser(props: dict[str, str], path: Path) -> Normaliser:
    """The normaliser of the metadata, checked as a checkpoint's is (finite means, positive deviations)."""
    raw = _json(props, "normaliser", path)
    try:
        norm = Normaliser.from_dict(raw)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"malformed metadata '{PREFIX}normaliser': {err}") from err
    channels = tuple(_json(props, "channels", path))
    if norm.channels != channels or norm.mean.shape != (len(channels),) or norm.std.shape != (len(channels),):
        raise InputError(path, f"metadata normaliser for {list(norm.channels)} does not match the channels "
                               f"{list(channels)}")
    if not (np.all(np.isfinite(norm.mean)) and np.all(norm.std > 0)):
        raise InputError(path, "malformed normaliser: means must be finite and standard deviations positive")
    return norm


def read_members(props: dict[str, str], path: Path) -> list[OnnxMember]:
    """Each member's record, its units and distribution checked as :func:`~slidemap.mapping.checkpoint.read_units`
    checks a checkpoint's."""
    if props.get(PREFIX + "format") != FORMAT:
        raise InputError(path, f"not a slidemap ONNX model of this version (metadata '{PREFIX}format' is "
                               f"{props.get(PREFIX + 'format')!r}, expected {FORMAT!r}): export it again")
    channels = tuple(_json(props, "channels", path))
    records = _json(props, "members", path)
    if not isinstance(records, list) or not records:
        raise InputError(path, f"malformed metadata '{PREFIX}members': expected a list of checkpoint records")
    members = []
    for rec in records:
        try:
            units, distribution = read_units({k: rec[k] for k in ("units", "distribution") if rec.get(k) is not None},
                                             channels, path)
            members.append(OnnxMember(
                path=path, checkpoint=str(rec["checkpoint"]), fingerprint=str(rec["fingerprint"]),
                model_name=str(rec["name"]), channels=channels, window=int(rec["window"]),
                threshold=float(rec["threshold"]), temperature=float(rec["temperature"]), units=units,
                distribution=distribution, card=rec.get("card") if isinstance(rec.get("card"), dict) else None,
                data_kind=str(rec["data_kind"]) if rec.get("data_kind") else None))
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(path, f"malformed metadata '{PREFIX}members': {err!r}") from err
        if not (np.isfinite(members[-1].temperature) and members[-1].temperature > 0):
            raise InputError(path, f"malformed metadata '{PREFIX}members': temperature {rec['temperature']!r}")
    return members
