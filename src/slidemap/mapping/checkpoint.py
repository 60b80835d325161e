"""Rebuild a trained network and its input normalisation from a checkpoint written by train.py.

A slidemap checkpoint is a Lightning checkpoint of :class:`~slidemap.training.module.LandslideModule`; its
hyper-parameters carry ``model``, the resolved model config whose ``net`` (a ``_target_`` with every argument,
channel counts included) rebuilds the network exactly as training built it, and ``data_info``: the input
channels, the training window and the normaliser fitted on the scenario's training areas. That is everything
needed to map a new scene. Checkpoints from this version on also record each channel's unit and its training
distribution (``units``, ``distribution``), which :mod:`slidemap.mapping.unit_guard` checks scenes against.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slidemap.data.sites.channels import canonical_all
from slidemap.data.sites.units import Distribution
from slidemap.data.tiling.patches import Normaliser
from slidemap.errors import InputError
from slidemap.models.build import IN_CHANNEL_ARGS, build_net, network_class

log = logging.getLogger(__name__)

RETRAIN_HINT = ("retrain it with this version (python train.py model=... window=... scenario=...): see docs/mapping.md, "
                "'Models you can trust'")


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A network ready for inference (eval mode, on CPU) and what it expects of its input."""

    net: nn.Module
    model_name: str
    channels: tuple[str, ...]
    window: int
    normaliser: Normaliser
    threshold: float
    path: Path
    units: tuple[str, ...] | None = None
    distribution: Distribution | None = None
    temperature: float = 1.0  # calibration: probabilities are sigmoid(logit / temperature); 1.0 = uncalibrated
    card: dict[str, Any] | None = None  # the model card (slidemap.mapping.model_card); None in older checkpoints
    per_patch: bool = False  # trained on patches standardised one by one (dataset.yaml 'normalise: per_patch')
    patch_size: int | None = None  # per_patch: the side of the patches it was standardised over (maps use it)
    data_kind: str | None = None  # what trained it (synthetic | sites | ...), recorded from the first save on

    def to(self, device: str | torch.device) -> "TrainedModel":
        """Move the network to ``device`` (in place) and return self."""
        self.net.to(device)
        return self


def resolve_checkpoint(path: str | PathLike[str]) -> Path:
    """The checkpoint file; a run folder stands for its ``checkpoints/best.ckpt``."""
    p = Path(path)
    if p.is_dir():
        best = p / "checkpoints" / "best.ckpt"
        if best.is_file():
            return best
        raise InputError(p, "is a folder without checkpoints/best.ckpt; give the checkpoint file")
    if not p.is_file():
        raise InputError(p, "checkpoint not found")
    return p


def _first_line(err: BaseException) -> str:
    return ((str(err).strip().splitlines() or [type(err).__name__])[0])[:200]


def _arguments(net_cfg: dict[str, Any]) -> dict[str, Any]:
    """The network's constructor arguments, for messages."""
    return {k: v for k, v in net_cfg.items() if not k.startswith("_")}


def _require(hp: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = hp.get(key)
    if not isinstance(value, kind):
        raise InputError(path, f"not a slidemap checkpoint: hyper-parameter '{key}' is missing or malformed "
                               "(checkpoints are written by train.py)")
    return value


def load_checkpoint(path: str | PathLike[str]) -> TrainedModel:
    """Load a train.py checkpoint: the network with its weights, channels, window and normaliser.

    Raises:
        InputError: missing or unreadable file, not a slidemap checkpoint, unknown model, weights that do
            not fit the recorded network, or inconsistent channel / normalisation records.
    """
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- a damaged file can fail anywhere in the unpickler (IndexError, ...)
        raise InputError(path, f"cannot read checkpoint (corrupt or not a PyTorch file): {_first_line(err)}") from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("hyper_parameters"), dict) \
            or not isinstance(ckpt.get("state_dict"), dict):
        raise InputError(path, "not a slidemap checkpoint: no Lightning hyper-parameters and state_dict "
                               "(checkpoints are written by train.py)")
    hp = ckpt["hyper_parameters"]
    if "model" not in hp and "net_hparams" in hp:
        raise InputError(path, f"checkpoint from an older slidemap (network recorded by registry name, not by its "
                               f"config): {RETRAIN_HINT}")
    model_cfg = _require(hp, "model", dict, path)
    net_cfg = _require(model_cfg, "net", dict, path)
    name = str(model_cfg.get("name") or net_cfg.get("_target_"))
    info = _require(hp, "data_info", dict, path)
    try:  # Sentinel-2 ids of older checkpoints (B2, ...) become the common names they mean (blue, ...)
        channels = canonical_all(_require(info, "channels", (list, tuple), path))
    except ValueError as err:
        raise InputError(path, f"checkpoint asks for an {err}") from err
    window = _require(info, "window", int, path)
    normaliser = _normaliser(_require(info, "normaliser", dict, path), channels, path)
    try:
        net_class = network_class(net_cfg)
    except ValueError as err:
        raise InputError(path, f"cannot rebuild model {name!r}: {err}") from err
    in_channels = next((net_cfg[k] for k in IN_CHANNEL_ARGS if k in net_cfg), len(channels))
    if in_channels != len(channels):
        raise InputError(path, f"channel mismatch inside the checkpoint: the network takes {in_channels} "
                               f"channels but {len(channels)} are recorded ({', '.join(channels)})")
    try:
        net = build_net(net_cfg)
    except ValueError as err:
        raise InputError(path, f"cannot rebuild model {name!r} ({net_class.__name__}): {err}") from err
    weights = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(weights)
    except RuntimeError as err:
        raise InputError(path, f"weights do not fit model {name!r} {_arguments(net_cfg)}: "
                               f"{' '.join(str(err).split())[:200]}") from err
    net.eval()
    log.info("loaded %s (%s, window %d, channels %s) from %s", name, _arguments(net_cfg), window,
             ",".join(channels), path)
    units, distribution = read_units(info, channels, path)
    return TrainedModel(net=net, model_name=name, channels=channels, window=window, normaliser=normaliser,
                        threshold=_threshold(hp, path), path=path, units=units, distribution=distribution,
                        temperature=_temperature(hp, path), per_patch=info.get("normalise") == "per_patch",
                        patch_size=_patch_size(info, window, path),
                        card=hp.get("card") if isinstance(hp.get("card"), dict) else None,
                        data_kind=str(info["data_kind"]) if info.get("data_kind") else None)


def _patch_size(info: dict[str, Any], window: int, path: Path) -> int | None:
    """The per_patch training patches' side (square patches only); the window for checkpoints written before it."""
    if info.get("normalise") != "per_patch":
        return None
    size = info.get("patch_size", [window, window])
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise InputError(path, f"not a slidemap checkpoint: malformed patch_size {size!r}")
    if size[0] != size[1]:
        raise InputError(path, f"trained on {size[0]} x {size[1]} px patches standardised one by one: a scene is "
                               "mapped in square tiles of the patch size, so non-square patches cannot be mapped")
    return int(size[0])


def _threshold(hp: dict[str, Any], path: Path) -> float:
    """The checkpoint's threshold: the paper's 0.5, a given one, or the one ``threshold=auto`` fitted; NaN for an
    ``auto`` never fitted (the run stopped before it): :func:`chosen_threshold` then asks for one."""
    value = hp.get("threshold", 0.5)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def chosen_threshold(model: Any, given: float | None) -> float:
    """The map's threshold: ``given``, else the checkpoint's; refused when neither is known (an unfitted auto)."""
    value = model.threshold if given is None else float(given)
    if math.isnan(value):
        raise InputError(getattr(model, "path", None), "its threshold=auto was never fitted (the run did not "
                                                       "finish): give a threshold (--threshold / threshold=...)")
    return value


def _temperature(hp: dict[str, Any], path: Path) -> float:
    """The fitted temperature of ``hyper_parameters["calibration"]``; 1.0 for checkpoints written before it."""
    record = hp.get("calibration") or {}
    try:
        t = float(record.get("temperature", 1.0)) if isinstance(record, dict) else float("nan")
    except (TypeError, ValueError):
        t = float("nan")
    if not (np.isfinite(t) and t > 0):
        raise InputError(path, f"malformed calibration record {record!r}: the temperature must be a positive number")
    return t


def _normaliser(raw: dict[str, Any], channels: tuple[str, ...], path: Path) -> Normaliser:
    try:
        norm = Normaliser.from_dict(raw)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"not a slidemap checkpoint: malformed normaliser ({_first_line(err)})") from err
    if norm.channels != channels or norm.mean.shape != (len(channels),) or norm.std.shape != (len(channels),):
        raise InputError(path, f"normalisation does not match the channels inside the checkpoint: normaliser for "
                               f"{list(norm.channels)} ({norm.mean.size} means), channels {list(channels)}")
    if not (np.all(np.isfinite(norm.mean)) and np.all(norm.std > 0)):
        raise InputError(path, "malformed normaliser: means must be finite and standard deviations positive")
    return norm


def read_units(info: dict[str, Any], channels: tuple[str, ...],
               path: Path) -> tuple[tuple[str, ...] | None, Distribution | None]:
    """The channels' units and training distribution recorded in ``data_info``; (None, None) in older checkpoints."""
    if "units" not in info and "distribution" not in info:
        return None, None
    units = info.get("units")
    if not isinstance(units, list | tuple) or len(units) != len(channels) or not all(isinstance(u, str) for u in units):
        raise InputError(path, f"malformed units record {units!r}: expected one unit per channel {list(channels)}")
    try:
        distribution = Distribution.from_dict(info["distribution"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"malformed training distribution record ({_first_line(err)})") from err
    if distribution.channels != channels:
        raise InputError(path, f"training distribution of {list(distribution.channels)} but the checkpoint's "
                               f"channels are {list(channels)}")
    return tuple(units), distribution


def check_channels(model: TrainedModel, channels: tuple[str, ...] | list[str], source: str) -> None:
    """Refuse data configured with other input channels than the checkpoint was trained on."""
    channels = canonical_all(channels)
    if channels != model.channels:
        raise InputError(model.path, f"channel mismatch: trained on [{', '.join(model.channels)}] but {source} "
                                     f"gives [{', '.join(channels)}]; set data.channels=[{','.join(model.channels)}]")


def same_normaliser(a: Normaliser, b: Normaliser, rtol: float = 1e-4) -> bool:
    """Whether two normalisers hold the same statistics (to float32 round-off)."""
    return (a.channels == b.channels and np.allclose(a.mean, b.mean, rtol=rtol, atol=1e-6)
            and np.allclose(a.std, b.std, rtol=rtol, atol=1e-6))
