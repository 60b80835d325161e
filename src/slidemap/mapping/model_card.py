"""A model's card: what a checkpoint says of itself (network, inputs, the data that trained it, recipe, calibration,
threshold, test scores), read and printed wherever the checkpoint travels.

train.py writes the card into ``best.ckpt`` (``hyper_parameters["card"]``) and as ``model_card.md`` beside it
(:mod:`slidemap.training.card`); ``slidemap card CKPT`` prints it for any checkpoint, saying what an older one does
not record. Mapping reads the data kind from it: a model trained only on the built-in synthetic sites never maps a
real scene without an explicit flag (:mod:`slidemap.mapping.provenance`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

CARD_KEY = "card"
"""Where a checkpoint keeps its card: ``hyper_parameters[CARD_KEY]``."""

DATA_KINDS = ("synthetic", "sites", "landslide4sense", "patches")
UNKNOWN = ("unknown (not recorded: the card is written when a run finishes; this checkpoint is of a run that did not "
           "finish, or from before model cards)")
FINGERPRINT_CHUNK = 1 << 20


def file_fingerprint(path: Path) -> str:
    """SHA-256 of a file's bytes (16 hex digits): the same checkpoint copied or renamed has the same fingerprint."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(FINGERPRINT_CHUNK):
            digest.update(block)
    return digest.hexdigest()[:16]


def data_kind(card: dict[str, Any] | None) -> str | None:
    """What trained the model (one of :data:`DATA_KINDS`), None when the checkpoint does not say."""
    kind = ((card or {}).get("data") or {}).get("kind")
    return str(kind) if kind in DATA_KINDS else None


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}"


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def card_markdown(card: dict[str, Any] | None, checkpoint: Path | None = None,
                  intervals: dict[str, str] | None = None) -> str:
    """The card as Markdown (``model_card.md``, ``slidemap card``); a missing section says it is unknown.

    ``intervals``: test area -> the F1 interval over the seeds of the model's sweep cell, when known."""
    card = card or {}
    net, inputs, data = card.get("network") or {}, card.get("inputs") or {}, card.get("data") or {}
    train, calib = card.get("training") or {}, card.get("calibration") or {}
    lines = [f"# Model card: {card.get('name', checkpoint.name if checkpoint else 'checkpoint')}", ""]
    if checkpoint is not None:
        lines += [f"Checkpoint `{checkpoint}`, fingerprint `{file_fingerprint(checkpoint)}`.", ""]
    lines += ["## Network", ""]
    lines += ([f"`{net['class']}` {net.get('arguments', {})}, {net.get('parameters', 0):,} parameters."]
              if net else [UNKNOWN])
    lines += ["", "## Inputs", ""]
    if inputs.get("channels"):
        lines += [f"Window {inputs.get('window')} px. Channels, units and the training distribution (the normaliser's "
                  "mean and sd, the median):", "", _row(["channel", "unit", "mean", "sd", "median"]),
                  "|---|---|--:|--:|--:|"]
        for c in inputs["channels"]:
            lines.append(_row([c["name"], c.get("unit", "?"), f"{c.get('mean', float('nan')):.4g}",
                               f"{c.get('sd', float('nan')):.4g}", f"{c.get('median', float('nan')):.4g}"]))
    else:
        lines.append(UNKNOWN)
    enc = inputs.get("encoder_normaliser")
    if enc:
        lines += ["", f"The encoder sees {enc['from_card']} normalised as its pretrained weights expect (card "
                      f"`{enc['card']}`, source: {enc['source']}; reflectance mean {enc['mean']}, sd {enc['std']}), "
                      f"folded into the network's input_scale/input_shift; other channels as the table."]
    lines += ["", "## Data that trained it", ""]
    lines += ([f"Kind **{data.get('kind')}**" + (" (the built-in synthetic sites: maps of real scenes are refused "
                                                   "without --allow-synthetic-model)" if data.get('kind') == "synthetic"
                                                   else "") + f"; root `{data.get('root')}`; "
               f"dataset {data.get('name')}; trained on {data.get('train_sites')}; {data.get('train_patches')} "
               f"training patches; files fingerprint `{data.get('fingerprint')}` ({data.get('files')} files)."]
              if data else [UNKNOWN])
    lines += ["", "## Training", ""]
    lines += ([", ".join(f"{k}: {v}" for k, v in train.items())] if train else [UNKNOWN])
    lines += ["", "## Calibration and threshold", ""]
    lines += ([f"Temperature {calib.get('temperature')} (fitted on the validation area); ECE on all test areas "
               f"{_pct(calib.get('ece_uncalibrated'))}% before, {_pct(calib.get('ece'))}% after. "
               f"Threshold {card.get('threshold')}."] if calib else [UNKNOWN])
    scores = card.get("scores") or {}
    lines += ["", "## Test scores (percent)", ""]
    if scores:
        lines += [_row(["area", "precision", "recall", "F1", "IoU"] + (["F1 over the cell's seeds"] if intervals
                                                                       else [])),
                  "|---|--:|--:|--:|--:|" + ("---|" if intervals else "")]
        for area, m in scores.items():
            extra = [intervals.get(area, "")] if intervals else []
            lines.append(_row([area, *(_pct(m.get(k)) for k in ("precision", "recall", "f1", "iou")), *extra]))
    else:
        lines.append(UNKNOWN)
    return "\n".join(lines) + "\n"
