"""`slidemap region`: map several Sentinel-2 products as jobs (resumable) and merge them into one seamless map."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from slidemap.cli.map import ENGINES, add_synthetic_flag, check_engine
from slidemap.config_checks import check_count, check_value
from slidemap.errors import InputError

log = logging.getLogger(__name__)


def add_region_parser(sub: argparse._SubParsersAction) -> None:
    """The ``region`` subcommand and its arguments."""
    from slidemap.cli.site import add_product_arguments

    p = sub.add_parser("region", help="map a region of several Sentinel-2 products: one job per product "
                                      "footprint, resumable, merged into one map",
                       description="Plans one `slidemap map` job per Sentinel-2 product footprint (tiles of the "
                                   "same date and orbit together), runs them on this machine (a pool dividing its "
                                   "cores) or as a submitit job array (--executor submitit-local | slurm), records "
                                   "them in OUT/manifest.json, and merges the maps into "
                                   "OUT/region_*.tif and OUT/region_landslides.gpkg. The same command again skips "
                                   "finished jobs and reruns failed or interrupted ones.")
    p.add_argument("--status", metavar="OUT", default=None, help="print the jobs of a region folder and exit")
    p.add_argument("--ckpt", nargs="+", help="checkpoint(s) written by train.py, as for slidemap map")
    p.add_argument("--model", default=None, help="an ONNX model written by `slidemap export`, mapped by every job "
                                                 "with --engine onnxruntime (which a --model implies)")
    p.add_argument("--engine", default=None, choices=ENGINES,
                   help="torch: the checkpoints (--ckpt); onnxruntime: an exported model (--model), as for "
                        "slidemap map")
    add_product_arguments(p, required=False)
    p.add_argument("--out", help="the region's folder (new, or one this command wrote before)")
    p.add_argument("--crs", default=None, help="CRS of the merged map (default: the one covering most of the region)")
    p.add_argument("--workers", type=int, default=1,
                   help="jobs at a time with --executor local; the cores are divided among them (default 1)")
    p.add_argument("--executor", default="local", help="where the jobs run: local (a pool on this machine), "
                                                       "submitit-local (a submitit job array here) or slurm (a "
                                                       "SLURM job array through submitit; run on the login node)")
    p.add_argument("--executor-config", default=None, metavar="FILE",
                   help="the submitit/SLURM parameters (default: conf/region/<executor>.yaml)")
    p.add_argument("--force", action="store_true",
                   help="start over: remove this region's own files in --out (manifest, jobs, region_* maps, "
                        ".submitit), never other files")
    p.add_argument("--tile", type=int, default=None,
                   help="tile size of every job's mosaic, as for slidemap map")
    p.add_argument("--threshold", type=float, default=None,
                   help="probability threshold of the binary map (default: the checkpoint's: the paper's 0.5, or "
                        "the one threshold=auto fitted on the validation area)")
    p.add_argument("--overlap", type=float, default=None,
                   help="tile overlap fraction of the blended mosaic, as for slidemap map")
    p.add_argument("--precision", default="auto", choices=["auto", "32", "bf16"])
    p.add_argument("--tta", default="none", help="test-time views of every job, as for slidemap map (none|flips|d4)")
    add_synthetic_flag(p)
    p.set_defaults(func=region_command)


def map_options(args: argparse.Namespace) -> list[str]:
    """The options every job's ``slidemap map`` gets (the products and the output folder are per job)."""
    opts = ["--precision", args.precision, "--tta", args.tta]
    opts += ["--threshold", str(args.threshold)] if args.threshold is not None else []
    opts += ["--overlap", str(args.overlap)] if args.overlap is not None else []
    opts += ["--tile", str(args.tile)] if args.tile is not None else []
    if args.s2_pre:
        opts += ["--s2-pre", *[str(Path(p).resolve()) for p in args.s2_pre]]
    if args.bounds:
        opts += ["--bounds", *map(str, args.bounds), "--bounds-crs", args.bounds_crs]
    opts += ["--mask-classes", *map(str, args.mask_classes)]
    opts += ["--allow-l1c"] if args.allow_l1c else []
    opts += ["--allow-mixed-dates"] if args.allow_mixed_dates else []
    opts += ["--allow-synthetic-model"] if args.allow_synthetic_model else []
    return opts


def print_status(out: Path) -> int:
    """One line per job and a summary of a region folder."""
    from slidemap.region.jobs import read_manifest

    record = read_manifest(out)
    for job in record["jobs"]:
        took = f" {job['seconds']:.0f} s" if job.get("seconds") is not None else ""
        took += f" {job['peak_gib']:.2f} GiB" if job.get("peak_gib") is not None else ""
        error = f": {job['error']}" if job.get("error") else ""
        print(f"{job['name']:<24} {job['status']:<8}{took}{error}")
    counts: dict[str, int] = {}
    for job in record["jobs"]:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    merged = "merged" if (out / "region_landslides.gpkg").is_file() and counts.get("done") == len(record["jobs"]) \
        else "not merged"
    print(f"{len(record['jobs'])} job(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"; {merged}")
    return 0


def model_arguments(args: argparse.Namespace, engine: str) -> list[str]:
    """What every job's ``slidemap map`` is given to map with: the checkpoints, or the exported model."""
    if engine == "onnxruntime":
        return ["--engine", "onnxruntime", "--model", str(Path(args.model).resolve())]
    return ["--ckpt", *[str(Path(c).resolve()) for c in args.ckpt]]


def _inputs(args: argparse.Namespace, options: list[str], engine: str) -> dict[str, Any]:
    resolve = lambda paths: [str(Path(p).resolve()) for p in paths]  # noqa: E731 -- three uses, one line each
    inputs = {"ckpt": resolve(args.ckpt or []), "s2": resolve(args.s2), "dem": resolve(args.dem),
              "map_options": options}
    return inputs if engine == "torch" else {**inputs, "engine": engine, "model": resolve([args.model])[0]}


def region_command(args: argparse.Namespace) -> int:
    """``slidemap region``: plan, run (or resume) and merge."""
    if args.status:
        return print_status(Path(args.status))
    for flag, value in (("--s2", args.s2), ("--dem", args.dem), ("--out", args.out)):
        if not value:
            raise InputError(flag, "missing (or give --status OUT to see a region's jobs)")
    engine = check_engine(args)
    check_count("--workers", args.workers)
    if args.threshold is not None:
        check_value("threshold", args.threshold, "--threshold")  # checked here once, not in every job
    if args.overlap is not None:
        check_value("overlap", args.overlap, "--overlap")
    if args.tile is not None:
        from slidemap.mapping.tiles import check_tile

        check_tile(args.tile)
    from slidemap.io import check_replaceable
    from slidemap.mapping.ensemble import check_tta
    from slidemap.region.engines import check_executor, run_submitit
    from slidemap.region.jobs import DONE, REGION_FILES, Manifest, remove_region_files, run_jobs
    from slidemap.region.merge import JobMaps, merge_region
    from slidemap.region.plan import plan_jobs

    check_tta(args.tta)
    from slidemap.ingest.scl import parse_mask_classes

    parse_mask_classes(args.mask_classes)  # refused here, before the region's folder is made, not in every job
    config = check_executor(args.executor, args.executor_config)
    from slidemap.cli.map import load_model
    from slidemap.mapping.provenance import check_synthetic_model

    check_synthetic_model(load_model(args, engine)[0], {}, "the region's Sentinel-2 products",
                          args.allow_synthetic_model)  # refused once, before any job

    start = time.perf_counter()
    out = Path(args.out)
    check_replaceable(out, REGION_FILES, "slidemap region")  # foreign files: refused, with or without a manifest
    jobs = plan_jobs(args.s2, allow_l1c=args.allow_l1c)
    if args.force and out.is_dir():
        removed = remove_region_files(out)
        log.info("--force: removed %s from %s", ", ".join(removed) or "nothing", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(out, f"output folder not writable: {err.strerror or err}") from err
    options = map_options(args)
    manifest = Manifest.create_or_resume(out, _inputs(args, options, engine), jobs)
    todo = manifest.pending()
    dem, model = [str(Path(d).resolve()) for d in args.dem], model_arguments(args, engine)
    log.info("region: %d job(s), %d to run, executor %s%s", len(manifest.record["jobs"]), len(todo), args.executor,
             f" ({args.workers} worker(s))" if args.executor == "local" else "")
    with tqdm(total=len(todo), desc="region jobs", unit="job", disable=not todo) as bar:
        if args.executor == "local":
            failed = run_jobs(manifest, out, dem, model, options, args.workers, bar.update)
        else:
            failed = run_submitit(manifest, out.resolve(), dem, model, options, args.executor, config, bar.update)
    if failed:
        for job in manifest.record["jobs"]:
            if job["status"] != DONE:
                log.error("job %s %s: %s", job["name"], job["status"], job.get("error"))
        first = next(j for j in manifest.record["jobs"] if j["status"] != DONE)
        raise InputError(out, f"{failed} of {len(manifest.record['jobs'])} job(s) failed; first, {first['name']}: "
                              f"{' '.join(str(first.get('error')).split())[:300]} (all in slidemap region --status "
                              f"{out}); fix what the error names and run the same command again: it redoes only the "
                              "failed jobs")
    from slidemap.region.jobs import footprint_of, job_dir

    done = [JobMaps(j["name"], job_dir(out, j["name"]), footprint_of(j)) for j in manifest.record["jobs"]]
    merge_start = time.perf_counter()
    paths = merge_region(done, out, args.crs)
    merged = time.perf_counter() - merge_start
    log.info("region of %d job(s) mapped and merged in %.1f s (merge %.1f s)", len(done),
             time.perf_counter() - start, merged)
    for path in paths:
        print(path)
    return 0
