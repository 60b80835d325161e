"""Map with an exported ONNX model on onnxruntime: the same mosaic, guards, views and writers as a checkpoint.

:class:`OnnxModel` stands where an :class:`~slidemap.mapping.ensemble.Ensemble` stands in
:func:`slidemap.mapping.maps.map_scene`: it predicts tiles (every test-time view, undone on the output), and exposes
the members' records (:class:`~slidemap.mapping.onnx_meta.OnnxMember`) that the units guard, the synthetic-model
guard and the provenance tags read of checkpoints. The graph returns the members' mean calibrated probability and
its spread for one view; over several views the first and second moments are averaged, so mean and standard
deviation are those of every member x view prediction, as the torch ensemble computes them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from slidemap.data.tiling.patches import Normaliser
from slidemap.errors import InputError
from slidemap.mapping.ensemble import Members, apply_view, check_tta, undo_view
from slidemap.mapping.model_card import file_fingerprint
from slidemap.mapping.onnx_export import output_names, require
from slidemap.mapping.onnx_meta import INPUT_NAME, PREFIX, OnnxMember, read_members, read_normaliser

log = logging.getLogger(__name__)


def _first_line(err: BaseException) -> str:
    return ((str(err).strip().splitlines() or [type(err).__name__])[0])[:200]


class OnnxModel(Members):
    """An exported model on onnxruntime's CPU provider, as one predictor of the mosaic.

    Args:
        path: The ``.onnx`` file written by ``slidemap export``.
        tta: Test-time views (``none``, ``flips``, ``d4``), applied around the graph.
        threads: onnxruntime's intra-op threads (None: its default, one per physical core).

    Raises:
        InputError: onnxruntime missing, an unreadable file, or a model without slidemap's metadata.
    """

    ENGINE_NOTE = " (onnxruntime)"

    def __init__(self, path: str | Path, tta: str = "none", threads: int | None = None) -> None:
        self.views = check_tta(tta)
        self.tta = tta
        self.file = Path(path)
        ort: Any = require("onnxruntime", "--engine onnxruntime")
        if not self.file.is_file():
            raise InputError(self.file, "ONNX model not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.file), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 -- onnxruntime raises its own exception types for damaged files
            raise InputError(self.file, f"cannot read ONNX model: {_first_line(err)}") from err
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.models: list[OnnxMember] = read_members(props, self.file)
        self.normaliser: Normaliser = read_normaliser(props, self.file)
        self.multiple = int(props.get(PREFIX + "tile_multiple", "32"))
        self.quantization = props.get(PREFIX + "quantization", "unknown")
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        self.outputs = output_names(len(self.models))
        outputs = [o.name for o in self.session.get_outputs()]
        if INPUT_NAME not in inputs or outputs != self.outputs or inputs[INPUT_NAME][1] != len(self.channels):
            raise InputError(self.file, f"graph does not take '{INPUT_NAME}' (N, {len(self.channels)}, H, W) to "
                                        f"{', '.join(self.outputs)}: not a slidemap export of this version")
        log.info("loaded ONNX model %s (%s, %d member(s), %s) on onnxruntime %s", self.file, self.model_name,
                 len(self.models), self.quantization, ort.__version__)

    @property
    def path(self) -> Path:
        return self.file

    @property
    def provenance(self) -> dict[str, str]:
        """Tags beside the checkpoints' in every map: the engine, the ONNX file and its quantisation."""
        return {"ENGINE": "onnxruntime", "ONNX_MODEL": str(self.file.resolve()),
                "ONNX_FINGERPRINT": file_fingerprint(self.file), "QUANTIZATION": self.quantization}

    @property
    def standardise(self) -> None:
        """No per-patch standardisation: models trained with it are not exported."""
        return None

    def map_tile(self, tile: int | None, default: int) -> int:
        """The tile a scene is mapped in: ``tile`` or ``default`` (as for a checkpoint without per-patch inputs)."""
        return int(tile or default)

    def to(self, device: Any) -> "OnnxModel":
        """CPU only (onnxruntime's CPU provider): anything else is refused."""
        if str(device) != "cpu":
            raise InputError("--engine onnxruntime", f"runs on the CPU, not {device}")
        return self

    def channels_last(self) -> None:
        """Nothing to do: the layout is the graph's."""

    def _run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean probability and spread (N, h, w) of the members for one view (0 for one member); tiles of other sizes
        than the graph's multiple are padded as the networks pad them (reflection, or edge replication when too
        small) and cropped."""
        h, w = tiles.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "edge"
            tiles = np.pad(tiles, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)
        mean, *sd = self.session.run(self.outputs, {INPUT_NAME: np.ascontiguousarray(tiles, np.float32)})
        mean = mean[:, 0, :h, :w]
        return mean, (sd[0][:, 0, :h, :w] if sd else np.zeros_like(mean))

    def __call__(self, tiles: np.ndarray, autocast: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean calibrated probability (N, h, w) of every member and view, and its standard deviation (None for a
        single prediction). ``autocast`` is the torch engine's and is ignored here."""
        if tiles.shape[-1] != tiles.shape[-2] and any(k % 2 for k, _ in self.views):
            raise ValueError(f"quarter turns need square tiles, got {tiles.shape[-2]} x {tiles.shape[-1]}")
        if len(self.views) == 1:
            mean, sd = self._run(tiles)
            return mean.astype(np.float32), (sd.astype(np.float32) if self.spread else None)
        total = np.zeros((tiles.shape[0], *tiles.shape[2:]), np.float64)
        square = np.zeros_like(total)
        for view in self.views:
            mean, sd = (undo_view(a, view) for a in self._run(apply_view(tiles, view)))
            total += mean
            square += np.square(sd, dtype=np.float64) + np.square(mean, dtype=np.float64)
        mean = total / len(self.views)
        sd = np.sqrt(np.maximum(square / len(self.views) - mean * mean, 0.0))
        return mean.astype(np.float32), sd.astype(np.float32)
