"""The report's rule baselines: the sites the runs trained on (from their saved configs) and both rules fitted
on each scenario's training sites, as the report's tables and baseline.csv show them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from slidemap.data.sites.site import Site
from slidemap.data.tiling.split import SiteSplit
from slidemap.errors import InputError
from slidemap.reporting.sweep import SCENARIO_ORDER, ordered

log = logging.getLogger(__name__)

BASELINE_COLUMNS = ("method", "scenario", "area", "threshold_name", "threshold", "slope_min", "precision", "recall",
                    "f1", "tp", "fp", "fn")


@dataclass(frozen=True)
class RuleInfo:
    """How a rule of :mod:`slidemap.evaluation.baseline` reads in the report."""

    label: str  # its row in the tables and its bar in the figures
    name: str  # its row in the baseline table
    threshold: str  # the key of its index threshold in ``run_baseline``'s thresholds
    condition: str  # the index test, as the baseline table's column shows it
    fmt: str  # how its threshold prints


RULES = {"ndvi": RuleInfo("rule baseline (NDVI)", "NDVI + slope", "ndvi_max", "NDVI <", "{:.2f}"),
         "rdndvi": RuleInfo("rule baseline (rdNDVI)", "rdNDVI + slope", "rdndvi_max", "rdNDVI <", "{:.0f}")}


@dataclass
class Baselines:
    """The rules fitted for the report ({method: ``run_baseline`` result}) and why a rule is absent."""

    rules: dict[str, dict] = field(default_factory=dict)
    rdndvi_absent: str = ""
    ndvi_absent: str = ""

    def labelled(self) -> dict[str, dict]:
        """{table row label: result}, the shape the tables and figures take."""
        return {RULES[method].label: result for method, result in self.rules.items()}


def data_root(runs: list[dict[str, Any]]) -> tuple[Path | None, list[str] | None, str]:
    """The sites folder the runs trained on (their saved Hydra config's ``data.root``), its site list, or why not.

    A relative root is taken from the folder the sweep was launched in (``hydra.runtime.cwd``). The first root
    that still exists wins: a sweep resumed from another clone records another path for its later runs.
    """
    first: tuple[Path | None, list[str] | None, str] | None = None
    for run in runs:
        hydra_dir = Path(run["dir"]) / ".hydra"
        try:
            cfg = OmegaConf.load(hydra_dir / "config.yaml")
            root, sites = OmegaConf.select(cfg, "data.root"), OmegaConf.select(cfg, "data.sites")
        except Exception as err:  # noqa: BLE001 -- any unreadable config: try the next run
            log.debug("%s: no data.root (%s)", hydra_dir, err)
            continue
        if not root:
            continue
        root = Path(str(root))
        if not root.is_absolute():
            try:
                root = Path(str(OmegaConf.load(hydra_dir / "hydra.yaml").hydra.runtime.cwd)) / root
            except Exception:  # noqa: BLE001 -- fall back to the current folder
                root = root.resolve()
        found = (root, (list(sites) if sites else None), "")
        if root.is_dir():
            return found
        first = first or found
    return first or (None, None, "no run's .hydra/config.yaml names a readable `data.root`")


def load_sites(runs: list[dict[str, Any]]) -> tuple[dict[str, Site], dict[str, SiteSplit], str]:
    """The runs' sites and splits and where they were read, or empty dicts and why not (the report goes on)."""
    from slidemap.data.tiling.split import split_sites
    from slidemap.data.sites.reader import read_sites

    root, names, why = data_root(runs)
    if root is None:
        return {}, {}, why
    try:
        sites = read_sites(root, names)
        return sites, split_sites(sites), str(root)
    except InputError as err:
        return {}, {}, f"cannot read the sites the runs trained on ({err})"


def _scenario_sites(runs: list[dict[str, Any]], sites: dict[str, Site]) -> dict[str, list[str]]:
    """Each scenario's training sites (from its runs' ``train_sites``), for the scenarios whose sites were read."""
    scenarios = {}
    for scenario in ordered({r["scenario"] for r in runs}, SCENARIO_ORDER):
        run = next(r for r in runs if r["scenario"] == scenario)
        train = list(run.get("train_sites") or (sites if scenario == "all" else [scenario]))
        if all(s in sites for s in train):
            scenarios[scenario] = train
    return scenarios


def baseline_for(runs: list[dict[str, Any]], sites: dict[str, Site], splits: dict[str, SiteSplit]) -> Baselines:
    """Both rules fitted on each scenario's training sites: the NDVI + slope rule always, the rdNDVI + slope rule
    when every site has a pre-event image (a change model should be compared with the change rule)."""
    from slidemap.evaluation.baseline import run_baseline

    scenarios = _scenario_sites(runs, sites) if sites else {}
    if not scenarios:
        return Baselines()
    no_index = [name for name, site in sites.items() if "ndvi" not in site.channels]
    if no_index:  # e.g. RGB imagery: the rules cannot run, which the report says instead of failing
        why = f"site(s) {', '.join(no_index)} have no red and nir bands for NDVI"
        return Baselines(ndvi_absent=why, rdndvi_absent=why)
    out = Baselines({"ndvi": run_baseline(sites, splits, scenarios)})
    lacking = [name for name, site in sites.items() if site.bands_pre is None]
    if lacking:
        out.rdndvi_absent = f"site(s) {', '.join(lacking)} have no pre-event image (s2_pre.tif)"
        return out
    try:
        out.rules["rdndvi"] = run_baseline(sites, splits, scenarios, method="rdndvi")
    except InputError as err:
        out.rdndvi_absent = str(err)
    return out


def baseline_rows(baselines: Baselines) -> list[list[Any]]:
    """baseline.csv: one row per rule, scenario and test area; the index threshold named, so both rules fit."""
    rows = []
    for method, result in baselines.rules.items():
        name = RULES[method].threshold
        for s, per_area in result["scenarios"].items():
            t = result["thresholds"][s]
            rows += [[method, s, a, name, t[name], t["slope_min"],
                      *(m[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn"))] for a, m in per_area.items()]
    return rows
