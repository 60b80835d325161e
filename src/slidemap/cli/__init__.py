"""The `slidemap` command: build the synthetic sites, build a site from Sentinel-2 products and DEM tiles, describe
a site folder, infer a patch dataset's dataset.yaml, score the rule baseline, report a sweep, map a scene."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from slidemap.entrypoints import install_signal_handlers, run_reported

log = logging.getLogger("slidemap")


def scenarios_for(names: Sequence[str]) -> dict[str, list[str]]:
    """The paper's scenarios for any set of sites: ``all`` plus one per site."""
    return {"all": list(names), **{n: [n] for n in names}}


def _synth(args: argparse.Namespace) -> int:
    from slidemap.data.synthetic import write_synthetic

    start = time.perf_counter()
    out = write_synthetic(args.out, scale=args.scale, seed=args.seed)
    log.info("synthetic sites (scale %s, seed %s) written to %s in %.1f s", args.scale, args.seed, out,
             time.perf_counter() - start)
    print(out)
    return 0


def _read(root: str, sites: list[str] | None):
    from slidemap.data.sites.reader import read_sites

    start = time.perf_counter()
    result = read_sites(root, sites)
    log.info("read %d site(s) in %.2f s", len(result), time.perf_counter() - start)
    return result


def _describe(args: argparse.Namespace) -> int:
    from slidemap.reporting.describe import describe_sites, format_description

    desc = describe_sites(_read(args.root, args.sites))
    print(json.dumps(desc, indent=2) if args.json else format_description(desc))
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from slidemap.data.tiling.split import split_sites
    from slidemap.evaluation.baseline import run_baseline
    from slidemap.reporting.describe import format_baseline

    sites = _read(args.root, args.sites)
    start = time.perf_counter()
    result = run_baseline(sites, split_sites(sites), scenarios_for(list(sites)), method=args.method)
    log.info("baseline fitted and scored in %.2f s", time.perf_counter() - start)
    print(json.dumps(result, indent=2) if args.json else format_baseline(result))
    return 0


def _report(args: argparse.Namespace) -> int:
    from slidemap.reporting.report import write_report
    from slidemap.reporting.search import is_search, write_search_report

    write = write_search_report if is_search(args.sweep_dir) else write_report  # a search: its trials, the best
    print(write(args.sweep_dir, args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from slidemap.data.synthetic import DEFAULT_SCALE, DEFAULT_SEED
    from slidemap.cli.card import add_card_parser
    from slidemap.cli.dataset import add_dataset_parser
    from slidemap.cli.export import add_export_parser
    from slidemap.cli.map import add_map_parser
    from slidemap.cli.region import add_region_parser
    from slidemap.cli.site import add_site_parser

    parser = argparse.ArgumentParser(prog="slidemap", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write the built-in synthetic three-site benchmark")
    p.add_argument("--out", required=True, help="output folder: new, empty or an earlier synth output (replaced "
                                                "atomically); a folder holding anything else is refused")
    p.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                   help=f"site area relative to the paper's (1 = paper extents; default {DEFAULT_SCALE})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.set_defaults(func=_synth)

    for name, func, text in (("describe", _describe, "per-site statistics and patch counts"),
                             ("baseline", _baseline, "NDVI + slope rule baseline for every scenario")):
        p = sub.add_parser(name, help=text)
        p.add_argument("root", help="folder of site folders")
        p.add_argument("--sites", nargs="+", default=None, help="only these sites (default: all)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "baseline":
            p.add_argument("--method", choices=["ndvi", "rdndvi"], default="ndvi",
                           help="ndvi: NDVI + slope rule (default); rdndvi: HazMapper's relative NDVI change from "
                                "the pre-event image (s2_pre.tif) + slope")
        p.set_defaults(func=func)

    p = sub.add_parser("report", help="the paper's tables and figures from a (partly) finished sweep directory")
    p.add_argument("sweep_dir", help="a multirun/<date>/<time> folder (a search's: its trials, the best, and the "
                                     "command that reruns it over seeds)")
    p.add_argument("--out", default=None, help="output folder (default: SWEEP_DIR/report)")
    p.set_defaults(func=_report)

    add_card_parser(sub)
    add_map_parser(sub)
    add_export_parser(sub)
    add_region_parser(sub)
    add_site_parser(sub)
    add_dataset_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; failures end as :func:`slidemap.entrypoints.run_reported` describes (one line for
    bad input and interruptions, a traceback only for a bug)."""
    install_signal_handlers()  # Ctrl-C while the command still starts up ends as "interrupted" too
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("slidemap: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    status, result = run_reported(lambda: args.func(args), f"slidemap {args.command}")
    if status >= 128 and any(t.name == "mosaic-producer" and t.is_alive() for t in threading.enumerate()):
        # Interrupted while a worker thread still runs torch (the map's producer): every cleanup has run; tearing
        # the interpreter down under that thread would abort ("terminate called without an active exception").
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status or int(result)
