"""`slidemap map`: landslide maps of a new scene (a site folder, or Sentinel-2 products + DEM tiles)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from slidemap.config_checks import check_file_name, check_value
from slidemap.errors import InputError
from slidemap.io import output_folder, scratch_dir
from slidemap.mapping.tiles import BLEND_MARGIN, MAP_TILE, TILE_MULTIPLE, check_tile

log = logging.getLogger(__name__)

ENGINES = ("torch", "onnxruntime")


def add_map_parser(sub: argparse._SubParsersAction) -> None:
    """The ``map`` subcommand and its arguments."""
    from slidemap.cli.site import add_product_arguments

    p = sub.add_parser("map", help="landslide maps of a new scene from a trained checkpoint",
                       description="Maps of a scene (no inventory needed): a site folder (--scene), or Sentinel-2 "
                                   "products + DEM tiles (--s2 ... --dem ...) built into one on the fly, exactly as "
                                   "`slidemap site` does. Cloud-masked pixels are no-data in every output.")
    p.add_argument("--ckpt", nargs="+", default=None,
                   help="one or more checkpoints written by train.py (several: an ensemble, e.g. the seeds of a cell)")
    p.add_argument("--model", default=None, help="an ONNX model written by `slidemap export` (with --engine "
                                                 "onnxruntime, which a --model implies)")
    p.add_argument("--engine", default=None, choices=ENGINES,
                   help="torch: the checkpoints (--ckpt); onnxruntime: an exported model (--model) on onnxruntime's "
                        "CPU provider, fp32 or int8 as exported (needs pip install 'slidemap[onnx]')")
    p.add_argument("--tta", default="none", help="test-time augmentation: none | flips (4 views) | d4 (8 flips and "
                                                 "rotations); with several predictions per pixel, the standard "
                                                 "deviation is written as <name>_uncertainty.tif")
    p.add_argument("--scene", default=None, help="a site folder with s2.tif and dem.tif (or give --s2 and --dem)")
    add_product_arguments(p, required=False)
    p.add_argument("--name", default=None, help="output file prefix (default: the scene folder's or product's name)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threshold", type=float, default=None,
                   help="probability threshold of the binary map (default: the checkpoint's: the paper's 0.5, or "
                        "the one threshold=auto fitted on the validation area)")
    p.add_argument("--tile", type=int, default=None,
                   help=f"tile size in px, a multiple of {TILE_MULTIPLE} (default: {MAP_TILE}, or the scene's size "
                        "when smaller; the checkpoint's training window, as train.py's test maps, is about 3x slower "
                        "at the same F1)")
    p.add_argument("--overlap", type=float, default=None,
                   help=f"tile overlap fraction of the blended mosaic (default: a {BLEND_MARGIN} px ramp, at most "
                        "0.5: 0.125 at 512 px tiles, 0.5 at the training windows)")
    p.add_argument("--precision", default="auto", choices=["auto", "32", "bf16"],
                   help="network precision: auto = bf16 where the CPU/GPU has bf16 units, else fp32")
    add_synthetic_flag(p)
    p.set_defaults(func=map_command)


def add_synthetic_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-synthetic-model", action="store_true",
                   help="map a real scene with a model trained only on the built-in synthetic sites (refused "
                        "otherwise: such a map means nothing; every output then carries a warning tag)")


def _product_name(path: str) -> str:
    """A short file prefix from a product path: the SAFE/zip/STAC/folder name without its suffixes."""
    name = Path(path.rstrip("/")).name
    for suffix in (".zip", ".json", ".SAFE"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name or "scene"


def product_only_options(args: argparse.Namespace) -> list[tuple[str, object, object]]:
    """(flag, value given, default) of the options that only building a site from products reads."""
    from slidemap.ingest.scl_classes import DEFAULT_MASK_CLASSES

    return [("--bounds", getattr(args, "bounds", None), None),
            ("--bounds-crs", getattr(args, "bounds_crs", "EPSG:4326"), "EPSG:4326"),
            ("--mask-classes", list(getattr(args, "mask_classes", DEFAULT_MASK_CLASSES)), list(DEFAULT_MASK_CLASSES)),
            ("--allow-l1c", getattr(args, "allow_l1c", False), False),
            ("--allow-mixed-dates", getattr(args, "allow_mixed_dates", False), False)]


def _scene_source(args: argparse.Namespace) -> str:
    """Check that exactly one of --scene and --s2/--dem is given; returns which."""
    products = getattr(args, "s2", None) or getattr(args, "dem", None)
    if args.scene and products:
        raise InputError("--scene", "give either --scene SITE_DIR or --s2 PRODUCT... --dem DEM..., not both")
    if args.scene:
        if getattr(args, "s2_pre", None):
            raise InputError("--s2-pre", "goes with --s2 PRODUCT...; a --scene folder brings its own s2_pre.tif")
        given = [flag for flag, value, default in product_only_options(args) if value != default]
        if given:  # they shape how products become a site: a --scene folder is one already
            raise InputError(given[0], "goes with --s2 PRODUCT...; a --scene folder is mapped whole, as it is (cut "
                                       "it, or build it with slidemap site --bounds ...)")
        return "scene"
    if not getattr(args, "s2", None) or not getattr(args, "dem", None):
        raise InputError("--s2" if not getattr(args, "s2", None) else "--dem",
                         "missing: give --scene SITE_DIR, or Sentinel-2 products with --s2 and DEM files with --dem")
    return "products"


def check_engine(args: argparse.Namespace) -> str:
    """The engine, from --engine or from which of --ckpt and --model is given; a mismatch is one line."""
    engine = args.engine or ("onnxruntime" if args.model and not args.ckpt else "torch")
    if engine == "torch":
        if args.model:
            raise InputError("--model", "is an ONNX model for --engine onnxruntime; the torch engine maps --ckpt")
        if not args.ckpt:
            raise InputError("--ckpt", "missing: give one or more checkpoints (or --model MODEL.onnx for the "
                                       "onnxruntime engine)")
        return engine
    if args.ckpt:
        raise InputError("--ckpt", "--engine onnxruntime maps an exported model: give --model MODEL.onnx (write one "
                                   "with slidemap export CKPT [CKPT ...] --out MODEL.onnx)")
    if not args.model:
        raise InputError("--model", "missing: --engine onnxruntime maps an exported model (slidemap export)")
    if args.precision != "auto":
        raise InputError("--precision", "is the torch engine's; an ONNX model runs as exported (fp32, or int8 with "
                                        "slidemap export --quantize int8)")
    return engine


def load_model(args: argparse.Namespace, engine: str):
    """The model to map with and the torch autocast dtype (None for onnxruntime)."""
    from slidemap.mapping.ensemble import Ensemble, check_tta

    check_tta(args.tta)
    if engine == "onnxruntime":
        import torch

        from slidemap.mapping.onnx_engine import OnnxModel

        return OnnxModel(args.model, args.tta, threads=torch.get_num_threads()), None
    from slidemap.mapping.checkpoint import load_checkpoint
    from slidemap.mapping.maps import inference_dtype, pick_device

    model = Ensemble([load_checkpoint(c) for c in args.ckpt], args.tta)  # refused here: nothing written yet
    device = pick_device("auto")
    autocast = inference_dtype(args.precision, device)
    return model.to(device), autocast


def map_command(args: argparse.Namespace) -> int:
    """``slidemap map``: maps of a whole scene, no inventory needed.

    The scene is a site folder (``--scene``) or Sentinel-2 products + DEM tiles (``--s2 --dem``, and pre-event
    products ``--s2-pre`` for a model with change inputs), which are built into a temporary site folder by
    :func:`slidemap.ingest.build_site` (the code of ``slidemap site``, clouds masked as no-data) and mapped the
    same way. A model whose channels need a pre-event image refuses a scene without one before any reading.
    """
    start = time.perf_counter()
    source = _scene_source(args)
    engine = check_engine(args)
    if args.threshold is not None:
        check_value("threshold", args.threshold, "--threshold")
    if args.overlap is not None:
        check_value("overlap", args.overlap, "--overlap")
    if args.tile is not None:
        check_tile(args.tile)
    if args.name is not None:
        check_file_name("--name", args.name)
    from slidemap.data.sites.channels import is_pre  # torch and rasterio: imported once the options are checked
    from slidemap.data.loading.scene import SceneStrips
    from slidemap.mapping.maps import map_scene

    model, autocast = load_model(args, engine)
    needs_pre = [c for c in model.channels if is_pre(c)]
    if source == "products" and needs_pre and not getattr(args, "s2_pre", None):
        raise InputError(model.path, f"the model reads {', '.join(needs_pre)}, which need a pre-event image: "
                                     "give pre-event products with --s2-pre PRODUCT...")
    # The maps land in --out together when all are written; a failure or Ctrl-C leaves --out as it was.
    with output_folder(args.out) as out, scratch_dir(out, "scene") as tmp:
        if source == "products":
            from slidemap.ingest.site_builder import build_site

            name = args.name or _product_name(args.s2[0])
            summary = build_site(args.s2, args.dem, Path(tmp) / name, bounds=args.bounds,
                                 bounds_crs=args.bounds_crs, mask_classes=args.mask_classes,
                                 allow_l1c=args.allow_l1c, allow_mixed_dates=args.allow_mixed_dates,
                                 s2_pre=getattr(args, "s2_pre", None))
            log.info("scene %s built from %d product(s) in %.1f s: %.1f%% cloud-masked", name,
                     len(summary["products"]), time.perf_counter() - start, 100 * summary["masked_share"])
            folder = Path(summary["site"])
        else:
            folder = Path(args.scene)
            name = args.name or folder.name
        scene = SceneStrips(folder, channels=model.channels)
        paths = map_scene(model, scene, out, overlap=args.overlap, tile=args.tile, threshold=args.threshold,
                          autocast=autocast, name=name, allow_synthetic_model=args.allow_synthetic_model)
    log.info("mapped %s (%d x %d px) with %s in %.2f s: maps in %s", name, *scene.shape, model.model_name,
             time.perf_counter() - start, args.out)
    for path in paths:
        print(Path(args.out) / path.name)
    return 0
