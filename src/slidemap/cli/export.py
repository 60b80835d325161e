"""``slidemap export CKPT [CKPT ...] --out MODEL.onnx``: a checkpoint, or an ensemble of them, as an ONNX model.

Several checkpoints are combined exactly as ``slidemap map --ckpt A B ...`` combines them (the same checks: one cell's
seeds, each once, the same channels, window and normalisation); the graph returns the mean of their calibrated
probabilities and its spread. ``--quantize int8`` writes a statically quantised model calibrated on the training
areas (:mod:`slidemap.mapping.onnx_quantize`). Map with ``slidemap map --engine onnxruntime --model MODEL.onnx``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from slidemap.errors import InputError

log = logging.getLogger(__name__)

QUANTIZE = ("none", "int8")


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write checkpoint(s) as an ONNX model for slidemap map --engine onnxruntime",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", nargs="+", help="checkpoint(s) written by train.py (several: an ensemble, as slidemap map "
                                           "--ckpt takes them), or run folders")
    p.add_argument("--out", required=True, help="the ONNX file to write (.onnx; replaced atomically)")
    p.add_argument("--quantize", default="none", choices=QUANTIZE,
                   help="int8: static quantisation calibrated on the training areas' valid pixels (default: none, fp32)")
    p.add_argument("--calibration", default=None, metavar="SITES_ROOT",
                   help="with --quantize int8: calibrate on the training areas of the sites in this folder (default: "
                        "the sites recorded in the model card)")
    p.add_argument("--calibration-tiles", type=int, default=None,
                   help="with --quantize int8: how many tiles of the training window to calibrate on (default 64)")
    p.set_defaults(func=export_command)


def _check_options(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.suffix != ".onnx":
        raise InputError("--out", f"must name an .onnx file, got {args.out!r}")
    if out.is_dir():
        raise InputError(out, "is a folder: --out names the .onnx file to write")
    if args.quantize == "none":
        for flag, value in (("--calibration", args.calibration), ("--calibration-tiles", args.calibration_tiles)):
            if value is not None:
                raise InputError(flag, "goes with --quantize int8")
    if args.calibration_tiles is not None and args.calibration_tiles < 1:
        raise InputError("--calibration-tiles", f"must be a positive number of tiles, got {args.calibration_tiles}")
    return out


def export_command(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = _check_options(args)
    from slidemap.mapping.checkpoint import load_checkpoint  # torch: imported by the command, not by --help
    from slidemap.mapping.ensemble import Ensemble
    from slidemap.mapping.onnx_export import export_onnx, require

    require("onnx")
    require("onnxruntime")
    model = Ensemble([load_checkpoint(c) for c in args.ckpt])  # the checks of slidemap map --ckpt A B ...
    if args.quantize == "none":
        export_onnx(model, out)
    else:
        from slidemap.mapping.onnx_export import write_model
        from slidemap.mapping.onnx_meta import PREFIX
        from slidemap.mapping.onnx_quantize import CALIBRATION_TILES, calibration_tiles, compare, quantize_int8

        tiles, where = calibration_tiles(model, args.calibration, args.calibration_tiles or CALIBRATION_TILES)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            fp32 = export_onnx(model, Path(tmp) / "fp32.onnx")
            proto = quantize_int8(fp32, out, tiles)
            thresholds = {m.threshold for m in model.models}
            log.info("%s", compare(fp32, proto, tiles, thresholds.pop() if len(thresholds) == 1 else 0.5))
            import onnx

            props = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
            props[PREFIX + "quantization"] = ("int8 (static, QDQ: weights int8 per channel, activations uint8 per "
                                              "tensor, min-max; logits head and calibration in fp32)")
            props[PREFIX + "calibration_data"] = where
            write_model(proto, props, out)
    log.info("exported %s (%s) to %s in %.1f s", model.model_name, args.quantize if args.quantize != "none" else "fp32",
             out, time.perf_counter() - start)
    print(out)
    return 0
