"""Static int8 quantisation of an exported model, calibrated on the training areas' valid pixels.

Static quantisation fixes each activation's int8 range from calibration data, so that data must look like what the
model will map: the pixels it was trained on. The calibration tiles are cut from the training areas (the training
block of each training site, without its validation and test blocks, as :func:`slidemap.data.tiling.split.split_sites`
draws them) of the sites recorded in the model card (``data.root``, ``data.train_sites``), or of the site folders
given with ``--calibration``. Every tile of the training window (rounded up to 32 px) on the block's grid that is at
least half valid is a candidate; :data:`CALIBRATION_TILES` of them, evenly spaced over all sites in order, are used,
normalised as mapping normalises (0 at no-data). The units guard checks the areas first, as it checks a scene.

Convolutions (and the pooling and additions between them) run in int8: weights per output channel, activations per
tensor (uint8, min-max over the calibration tiles). Each network's last convolution (its logits) and everything after
it (temperature, sigmoid, the ensemble mean) stay fp32, so probabilities keep their resolution near the threshold.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from slidemap.data.sites.reader import list_sites, read_sites
from slidemap.data.tiling.split import split_sites
from slidemap.errors import InputError
from slidemap.mapping.ensemble import Ensemble
from slidemap.mapping.mosaic import site_reader
from slidemap.mapping.onnx_export import require, trace_tile
from slidemap.mapping.onnx_meta import INPUT_NAME, OUTPUT_NAMES
from slidemap.mapping.unit_guard import check_areas

log = logging.getLogger(__name__)

CALIBRATION_TILES = 64
MIN_VALID_SHARE = 0.5
CALIBRATION_BATCH = 8


def training_sites(model: Ensemble, root: str | None) -> tuple[Path, list[str] | None]:
    """The folder of sites and the site names to calibrate on: ``root`` (all its sites, or the card's training sites
    among them), else the card's data root and training sites."""
    data = (model.models[0].card or {}).get("data") or {}
    names = data.get("train_sites") or None
    if root is not None:
        return Path(root), names
    kind = data.get("kind")
    if kind in ("landslide4sense", "patches"):
        raise InputError(model.path, f"was trained on a {kind} patch set; int8 calibration reads site folders: give "
                                     "--calibration SITES_ROOT (sites in the units the model was trained on)")
    if not data.get("root"):
        raise InputError(model.path, "records no training data (no model card): give --calibration SITES_ROOT to "
                                     "calibrate the int8 model on")
    if not Path(data["root"]).is_dir():
        raise InputError(data["root"], "the training data recorded in the model card is not here: give "
                                       "--calibration SITES_ROOT (the sites it was trained on, or like them)")
    return Path(data["root"]), names


def calibration_tiles(model: Ensemble, root: str | None, count: int = CALIBRATION_TILES) -> tuple[np.ndarray, str]:
    """``count`` normalised tiles (N, C, t, t) from the training areas, and a sentence saying where they come from."""
    folder, names = training_sites(model, root)
    present = list_sites(folder)
    names = [n for n in names if n in present] if names else None
    sites = read_sites(folder, names or None, require_label=False)
    splits = split_sites(sites)
    check_areas(model, {name: (site, splits[name].train) for name, site in sites.items()})
    tile = trace_tile(model.window)
    candidates = []
    for name, site in sites.items():
        block = splits[name].train
        valid = site.valid[block.slices]
        for r in range(0, max(1, block.rows - tile + 1), tile):
            for c in range(0, max(1, block.cols - tile + 1), tile):
                if valid[r:r + tile, c:c + tile].mean() >= MIN_VALID_SHARE:
                    candidates.append((name, r, c))
    if not candidates:
        raise InputError(folder, f"no {tile} px tile of the training areas is at least half valid: nothing to "
                                 "calibrate the int8 model on")
    picked = [candidates[int(i)] for i in np.unique(np.linspace(0, len(candidates) - 1, count).round())]
    tiles = np.zeros((len(picked), len(model.channels), tile, tile), np.float32)
    for name in sites:
        rows = [(k, r, c) for k, (n, r, c) in enumerate(picked) if n == name]
        if not rows:
            continue
        read, _ = site_reader(sites[name], model.normaliser, splits[name].train)
        for k, r, c in rows:
            band = read(r, r + tile)[0][:, :, c:c + tile]
            tiles[k, :, :band.shape[1], :band.shape[2]] = band
    where = (f"{len(picked)} tiles of {tile} px (of {len(candidates)} at least half valid) from the training areas "
             f"of {', '.join(sites)} in {folder.resolve()}")
    return tiles, where


class TileReader:
    """onnxruntime's calibration data reader over the calibration tiles, a few at a time."""

    def __init__(self, tiles: np.ndarray) -> None:
        self.batches: Iterator[np.ndarray] = iter([tiles[i:i + CALIBRATION_BATCH]
                                                   for i in range(0, len(tiles), CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def fp32_tail(proto: Any) -> list[str]:
    """The nodes that stay fp32: from each output back to the nearest convolution (the logits' 1x1 head), inclusive."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    keep: list[str] = []
    todo = [o.name for o in proto.graph.output]
    seen: set[str] = set()
    while todo:
        node = producers.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        keep.append(node.name)
        if node.op_type not in ("Conv", "ConvTranspose"):
            todo += list(node.input)
    return keep


def quantize_int8(fp32: Path, out: Path, tiles: np.ndarray) -> Any:
    """Quantise the fp32 model at ``fp32`` statically with ``tiles`` and return the int8 model proto (not saved)."""
    onnx = require("onnx", "--quantize")
    require("onnxruntime", "--quantize")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        tail = fp32_tail(onnx.load(str(pre)))  # type: ignore[attr-defined]
        quantize_static(str(pre), str(q), TileReader(tiles), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=tail,
                        calibrate_method=CalibrationMethod.MinMax)
        return onnx.load(str(q))  # type: ignore[attr-defined]


def compare(fp32: Path, int8: Any, tiles: np.ndarray, threshold: float) -> str:
    """How far the int8 model's probabilities lie from the fp32 model's on the calibration tiles (for the log)."""
    ort = require("onnxruntime", "--quantize")
    a = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    b = ort.InferenceSession(int8.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    pa = np.concatenate([a.run([OUTPUT_NAMES[0]], {INPUT_NAME: tiles[i:i + 8]})[0] for i in range(0, len(tiles), 8)])
    pb = np.concatenate([b.run([OUTPUT_NAMES[0]], {INPUT_NAME: tiles[i:i + 8]})[0] for i in range(0, len(tiles), 8)])
    diff = np.abs(pa - pb)
    flips = float(np.mean((pa > threshold) != (pb > threshold)))
    return (f"int8 vs fp32 on the calibration tiles: mean |dp| {diff.mean():.4f}, max {diff.max():.3f}, "
            f"{100 * flips:.2f}% of pixels change class at {threshold:g}")
