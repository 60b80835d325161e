"""Export a checkpoint, or an ensemble of them, to ONNX: the network(s) with a dynamic tile size, calibrated.

The graph takes what the mosaic feeds a network, normalised tiles (N, C, H, W), and returns what an
:class:`~slidemap.mapping.ensemble.Ensemble` of the same checkpoints computes from them for one view: the mean of
the members' calibrated probabilities ``sigmoid(logit / temperature)`` and their standard deviation. Test-time views
stay outside the graph (``slidemap map --tta`` applies them to any engine), as do normalisation and the threshold,
which travel in the metadata (:mod:`slidemap.mapping.onnx_meta`) with channels, units and the model cards.

The networks are traced (``torch.onnx.export``'s TorchScript exporter): batch, height and width are dynamic. A
network whose operators ONNX cannot express is refused naming the operator; every export is run once by onnxruntime
at a tile size other than the traced one and compared with torch, so a graph that tracing fixed to one size is
refused rather than written.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slidemap.errors import InputError
from slidemap.io import atomic_path
from slidemap.mapping.checkpoint import TrainedModel
from slidemap.mapping.ensemble import Ensemble
from slidemap.mapping.model_card import file_fingerprint
from slidemap.mapping.onnx_meta import INPUT_NAME, OUTPUT_NAMES, TILE_MULTIPLE, metadata, tile_multiple
from slidemap.mapping.provenance import slidemap_version

log = logging.getLogger(__name__)

OPSET = 17
INSTALL_HINT = "pip install 'slidemap[onnx]'"
SELF_CHECK_TOLERANCE = 1e-3
"""Largest difference in probability allowed between onnxruntime and torch (fp32) on the export's own check."""


def require(module: str, key: str | None = None) -> object:
    """Import ``onnx`` or ``onnxruntime``; missing, it is one line saying how to install them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise InputError(key, f"needs {module}, which is not installed: {INSTALL_HINT}") from err


class CalibratedMean(nn.Module):
    """Members' calibrated probabilities -> their mean and population standard deviation (two-pass: no cancellation
    for close members). One member gives its probability alone (no spread to compute: 4% of an fp32 pass)."""

    def __init__(self, nets: Sequence[nn.Module], temperatures: Sequence[float]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.temperatures = [float(t) for t in temperatures]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        probs = [torch.sigmoid(net(x)[:, :1] / t) for net, t in zip(self.nets, self.temperatures)]
        if len(probs) == 1:
            return (probs[0],)
        stack = torch.stack(probs)
        mean = stack.mean(0)
        return mean, (stack - mean).square().mean(0).sqrt()


def output_names(members: int) -> list[str]:
    """The graph's outputs: ``probability``, and ``sd`` for an ensemble."""
    return list(OUTPUT_NAMES[:1] if members == 1 else OUTPUT_NAMES)


def trace_tile(window: int) -> int:
    """The tile size the graph is traced at: the training window rounded up to :data:`TILE_MULTIPLE` (at least two
    of them), so no network pads inside the trace."""
    return max(2 * TILE_MULTIPLE, -(-window // TILE_MULTIPLE) * TILE_MULTIPLE)


def _operator(err: BaseException) -> str | None:
    found = re.search(r"operator '([^']+)'", str(err))
    return found.group(1) if found else None


def _first_line(err: BaseException) -> str:
    return ((str(err).strip().splitlines() or [type(err).__name__])[0])[:200]


def to_onnx_bytes(net: nn.Module, channels: int, tile: int, opset: int = OPSET) -> bytes:
    """The traced ONNX graph of ``net`` (input ``input``, outputs :func:`output_names`), dynamic N, H, W."""
    buffer = io.BytesIO()
    names = output_names(len(net.nets)) if isinstance(net, CalibratedMean) else list(OUTPUT_NAMES)
    sample = torch.randn(1, channels, tile, tile, generator=torch.Generator().manual_seed(0))
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarning on the networks' pad-to-stride branch: see TILE_MULTIPLE
        torch.onnx.export(net, (sample,), buffer, input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={name: axes for name in (INPUT_NAME, *names)}, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    return buffer.getvalue()


def _export_error(models: list[TrainedModel], err: BaseException, opset: int) -> InputError:
    """The one line for a network that cannot be exported: the member and the operator, when the error names one."""
    culprit = models[0]
    if len(models) > 1:  # find the member that fails on its own
        for m in models:
            try:
                to_onnx_bytes(CalibratedMean([m.net], [1.0]).eval(), len(m.channels), trace_tile(m.window), opset)
            except Exception:  # noqa: BLE001 -- any failure marks the member
                culprit = m
                break
    op = _operator(err)
    network = type(culprit.net).__name__
    if op:
        return InputError(culprit.path, f"cannot be exported to ONNX: operator {op} (in {network}) has no ONNX "
                                        f"form at opset {opset}")
    return InputError(culprit.path, f"cannot be exported to ONNX ({network}): {_first_line(err)}")


def self_check(data: bytes, wrapper: CalibratedMean, channels: int, tile: int, multiple: int, path: Path) -> float:
    """Run the export at another tile size than the traced one with onnxruntime; refuse it when it differs from torch
    (a network whose graph depends on the input size in a way tracing cannot follow). Returns the largest difference."""
    ort = require("onnxruntime")
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    size = (tile + multiple, tile + 3 * multiple)
    x = np.random.default_rng(1).standard_normal((2, channels, *size)).astype(np.float32)
    got = session.run(output_names(len(wrapper.nets)), {INPUT_NAME: x})
    with torch.no_grad():
        want = [t.numpy() for t in wrapper(torch.from_numpy(x))]
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    if not diff <= SELF_CHECK_TOLERANCE:
        raise InputError(path, f"the ONNX export differs from the network by {diff:.3g} in probability at a "
                               f"{size[0]} x {size[1]} px tile (traced at {tile} px): its forward pass depends on the "
                               "input size in a way tracing cannot follow")
    return diff


def export_onnx(model: Ensemble, out: Path, opset: int = OPSET, extra: dict[str, str] | None = None) -> Path:
    """Write ``model`` (one checkpoint, or the members of an ensemble; its views are not exported) as an fp32 ONNX
    model at ``out`` (atomically) and return the path.

    Raises:
        InputError: onnx or onnxruntime missing, an operator without an ONNX form, or an export that does not
            reproduce the network at another tile size.
    """
    onnx = require("onnx")
    members = model.models
    for m in members:
        if m.per_patch:  # the graph takes tiles normalised by the dataset normaliser only
            raise InputError(m.path, "trained with dataset.yaml 'normalise: per_patch' (each patch standardised on its "
                                     "own): an ONNX export does not carry that step yet; map it with --ckpt")
    wrapper = CalibratedMean([m.net for m in members], [m.temperature for m in members]).eval().cpu()
    tile, channels = trace_tile(model.window), len(model.channels)
    try:
        data = to_onnx_bytes(wrapper, channels, tile, opset)
    except Exception as err:  # noqa: BLE001 -- the exporter fails in many ways (unsupported operator, tracer errors)
        raise _export_error(members, err, opset) from err
    diff = self_check(data, wrapper, channels, tile, tile_multiple(members), Path(members[0].path))
    log.info("exported %s (%d member(s), opset %d): onnxruntime equals torch within %.2g at another tile size",
             model.model_name, len(members), opset, diff)
    proto = onnx.load_from_string(data)  # type: ignore[attr-defined]
    facts = {"version": slidemap_version(), "exported": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "quantization": "none (fp32)", **(extra or {})}
    write_model(proto, metadata(members, [file_fingerprint(Path(m.path)) for m in members], facts), out)
    return out


def write_model(proto: object, props: dict[str, str], out: Path) -> None:
    """Set ``props`` as the model's metadata (replacing slidemap's earlier ones) and save it atomically."""
    onnx = require("onnx")
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]  # type: ignore[attr-defined]
    del proto.metadata_props[:]  # type: ignore[attr-defined]
    for key, value in [*kept, *props.items()]:
        entry = proto.metadata_props.add()  # type: ignore[attr-defined]
        entry.key, entry.value = key, value
    proto.producer_name = "slidemap"  # type: ignore[attr-defined]
    proto.doc_string = ("Landslide probability per pixel from normalised Sentinel-2 + terrain tiles; see the "  # type: ignore[attr-defined]
                        "slidemap.* metadata for inputs, units, calibration and the model cards")
    onnx.checker.check_model(proto)  # type: ignore[attr-defined]
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))  # type: ignore[attr-defined]
