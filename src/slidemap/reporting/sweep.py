"""Read a sweep directory: its complete runs (seeds of a cell are replicates), its unfinished jobs, the grid it was
meant to cover."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tqdm.auto import tqdm

from slidemap.errors import InputError
from slidemap.reporting.records import record_problem
from slidemap.reporting.variants import DEFAULT_INPUTS, NO_AUGMENT, variant, variant_overrides
from slidemap.runs import METRICS_FILE, RUN_FILE, override_key
from slidemap.sweep_status import FAILED, job_state

log = logging.getLogger(__name__)

AREA_ORDER = ("taiwan", "china", "japan", "all")
SCENARIO_ORDER = ("all", "taiwan", "china", "japan")  # the paper's scenarios 1-4
MODEL_ORDER = ("unet", "resunet")
INPUTS_ORDER = ("post", "prepost", "change")  # conf/inputs: the paper's single date first
PAPER_TABLE = {"all": 4, "taiwan": 5, "china": 6, "japan": 7}
METRIC_COLUMNS = (("precision", "P"), ("recall", "R"), ("f1", "F1"))
_SKIP_DIRS = {"wandb", "checkpoints", "predictions", "csv", "report", "__pycache__"}

RunKey = tuple[str, int, str, str]
"""(model, window, scenario, inputs): what identifies a job of a sweep over the paper's axes and input sets; a run
trained with an augmentation has the input set ``<inputs>+<augment>`` (:func:`variant`), so it is never taken as a
seed of the un-augmented cell and the input-set comparison compares augmentations too."""
AXES = ("model", "window", "scenario", "inputs")


def ordered(values: Iterable[Any], preferred: Sequence[Any] = ()) -> list[Any]:
    """Distinct ``values``: the ones in ``preferred`` first in that order, then the rest sorted."""
    seen = set(values)
    return [v for v in preferred if v in seen] + sorted(seen - set(preferred), key=str)


def run_key(record: dict[str, Any]) -> RunKey:
    """A run's key; a metrics.json without ``inputs`` predates the input sets and used the post-event bands, one
    without ``augment`` (``loss``) predates the augmentations (losses) and used none (bce)."""
    return (str(record["model"]), int(record["window"]), str(record["scenario"]),
            variant(record.get("inputs"), record.get("augment"), record.get("loss")))


def seed_of(record: dict[str, Any]) -> int:
    """A run's seed (0 when not recorded): it tells the replicates of a cell apart and pairs runs of two cells."""
    seed = record.get("seed")
    return 0 if seed is None or seed == "" else int(seed)


def key_name(key: RunKey) -> str:
    """The job as the overrides that run it again (``model=unet window=64 scenario=taiwan``, plus ``inputs=...``
    when not the paper's): its folder name comes from ``run_name`` in conf/train.yaml, which is not repeated here."""
    model, window, scenario, inputs = key
    return f"model={model} window={window} scenario={scenario}" + variant_overrides(inputs)


def input_sets(runs: list[dict[str, Any]]) -> list[str]:
    """The input sets of the runs, the paper's post-event set first."""
    return ordered({run_key(r)[3] for r in runs}, INPUTS_ORDER)


@dataclass
class Sweep:
    """What a sweep directory holds. ``runs`` are complete (metrics.json with test results)."""

    root: Path
    runs: list[dict[str, Any]]
    incomplete: dict[RunKey | str, str] = field(default_factory=dict)  # job (key, or dir if unknown) -> reason
    seeds_incomplete: dict[tuple[RunKey, int], str] = field(default_factory=dict)  # a seed of a cell others finished
    axes: dict[str, list[Any]] = field(default_factory=dict)  # expected models / windows / scenarios / inputs

    @property
    def expected(self) -> list[RunKey]:
        return list(product(*(self.axes.get(name, [DEFAULT_INPUTS] if name == "inputs" else []) for name in AXES)))

    def missing(self) -> list[tuple[str, str]]:
        """(job name, why) for every expected job without a complete run, then unidentifiable broken jobs."""
        done = {run_key(r) for r in self.runs}
        out = [(key_name(k), self.incomplete.get(k, "absent: never started, or its folder was removed"))
               for k in sorted(self.expected, key=_sort_key) if k not in done]
        out += [(f"{key_name(k)} seed={seed}", why) for (k, seed), why in sorted(self.seeds_incomplete.items(),
                                                                                 key=lambda i: (_sort_key(i[0][0]),
                                                                                                i[0][1]))]
        out += [(str(k), why) for k, why in self.incomplete.items() if isinstance(k, str)]
        return out


def _job_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` that are Hydra jobs (a ``.hydra`` folder) or hold a metrics.json."""
    jobs = []
    for dirpath, dirnames, filenames in os.walk(root):
        if ".hydra" in dirnames or METRICS_FILE in filenames:
            jobs.append(Path(dirpath))
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
    return sorted(jobs)


def _config_job(job: Path) -> tuple[RunKey | None, int | None]:
    """The job's (model, window, scenario, inputs) and seed from its Hydra config; None for what cannot be told."""
    path = job / ".hydra" / "config.yaml"
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # noqa: BLE001 -- a broken job is reported, not fatal
        log.debug("%s: no job key (%s)", path, err)
        return None, None
    try:
        inputs = variant(*(OmegaConf.select(cfg, f"{g}.name", default=None) for g in ("inputs", "augment", "loss")))
        key: RunKey | None = (str(cfg.model.name), int(cfg.window), str(cfg.scenario.name), inputs)
    except Exception as err:  # noqa: BLE001 -- a broken job is reported, not fatal
        log.debug("%s: no job key (%s)", path, err)
        key = None
    try:
        seed = OmegaConf.select(cfg, "seed", default=None)
        return key, None if seed is None else int(seed)
    except Exception:  # noqa: BLE001 -- a seed that is not a number cannot pair the job
        return key, None


def _read_job(job: Path) -> tuple[dict[str, Any] | None, str]:
    """(complete run record, "") or (None, why the job is not complete: failed with its error, unfinished, or a
    metrics.json that is not a run record, named with what is wrong)."""
    path = job / METRICS_FILE
    if not path.exists():
        state = job_state(job)
        if state.status == FAILED:
            return None, f"failed: {state.error}"
        return None, "incomplete: no metrics.json (still running, failed or killed; see its train.log)"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"incomplete: {path}: unreadable ({type(err).__name__}: {err})"
    problem = record_problem(record)
    if problem:
        return None, f"incomplete: {path}: {problem}"
    if "checkpoint" in record and "best_checkpoint" not in record:
        return None, f"not a training run: {path} is eval.py's score of {record['checkpoint']}"
    return {**record, "dir": str(job)}, ""


def _sweep_values(text: str) -> list[str]:
    """The values of one Hydra sweep override: ``a,b``, ``choice(a,b)`` or ``range(lo,hi[,step])``."""
    text = text.strip()
    m = re.fullmatch(r"range\((-?\d+)\s*,\s*(-?\d+)(?:\s*,\s*(-?\d+))?\)", text)
    if m:
        return [str(v) for v in range(int(m.group(1)), int(m.group(2)), int(m.group(3) or 1))]
    m = re.fullmatch(r"choice\((.*)\)", text)
    return [v.strip().strip("'\"") for v in (m.group(1) if m else text).split(",") if v.strip()]


def sweep_axes(multirun_yaml: Path) -> dict[str, list[str]]:
    """Models, windows, scenarios, input sets and seeds a Hydra multirun asked for (task overrides, sweeper params).

    A key the sweep did not override takes the single value of the composed config saved beside it; a sweep from
    before the ``inputs`` group used the post-event set. Input sets, losses and augmentations combine into the
    ``inputs`` axis (:func:`~slidemap.reporting.variants.variant`).
    """
    cfg = OmegaConf.load(multirun_yaml)
    asked: dict[str, list[str]] = {}
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    for key, value in dict(params).items():
        asked[str(key).lstrip("+~")] = _sweep_values(str(value))
    for item in OmegaConf.select(cfg, "hydra.overrides.task") or []:
        key, sep, value = str(item).partition("=")
        if sep:
            asked[key.lstrip("+~")] = _sweep_values(value)
    defaults = {"model": OmegaConf.select(cfg, "model.name", throw_on_missing=False, default=None),
                "window": OmegaConf.select(cfg, "window", default=None),
                "scenario": OmegaConf.select(cfg, "scenario.name", default=None),
                "inputs": OmegaConf.select(cfg, "inputs.name", default=None) or DEFAULT_INPUTS,
                "augment": OmegaConf.select(cfg, "augment.name", default=None) or NO_AUGMENT,
                "loss": OmegaConf.select(cfg, "loss.name", default=None) or "bce",
                "seed": OmegaConf.select(cfg, "seed", default=None)}
    axes = {}
    for key, default in defaults.items():
        values = asked.get(key, [] if default is None else [str(default)])
        axes[key] = [int(v) for v in values if v.lstrip("-").isdigit()] if key in ("window", "seed") else values
    augments, losses = axes.pop("augment"), axes.pop("loss")
    axes["inputs"] = [variant(i, a, x) for i in axes["inputs"] for x in losses for a in augments]
    return axes


def _overrides(job: str | Path) -> set[str]:
    """The overrides a job recorded in its run.json (empty for a run from before run.json, or an unreadable one)."""
    try:
        return {str(o) for o in json.loads((Path(job) / RUN_FILE).read_text())["overrides"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def check_replicates(runs: list[dict[str, Any]]) -> None:
    """Refuse two complete runs of one cell with one seed: the report takes a cell's runs as its seeds, so they
    would count twice (a sweep over an axis outside the cell, such as ``optimizer.lr``, or two sweeps of one grid
    under one folder), giving a mean over different settings and an interval narrower than the seeds allow.

    Raises:
        InputError: naming both folders and the overrides in which they differ.
    """
    seen: dict[tuple[RunKey, int], str] = {}
    for r in runs:
        key = (run_key(r), seed_of(r))
        if key not in seen:
            seen[key] = r["dir"]
            continue
        first, second = _overrides(seen[key]), _overrides(r["dir"])
        differ = sorted(first ^ second)
        how = (f"they differ in {', '.join(differ)}, an axis the report does not tell apart" if differ
               else "the same overrides twice (two sweeps of one grid under this folder?)" if first and second
               else f"what tells them apart is not recorded (no {RUN_FILE})")
        raise InputError(r["dir"], f"same cell ({key_name(key[0])}) and seed {key[1]} as {seen[key]}: {how}; the "
                                   "report would pool them as seeds of one cell. Report a folder that holds each "
                                   "cell and seed once (move each setting's job folders into a folder of its own)")


CELL_KEYS = ("seed", "model", "window", "scenario", "inputs", "augment", "loss")
"""Overrides left out when the seeds of a cell are compared: the seed, and the cell's own axes (equal within a cell,
whether given on the command line or left at their default)."""


def _setting(overrides: set[str]) -> set[str]:
    """A run's overrides without its seed and its cell's axes: what the seeds of one cell must share."""
    return {o for o in overrides if override_key(o) not in CELL_KEYS}


def check_cells(runs: list[dict[str, Any]]) -> None:
    """Refuse a cell whose runs differ in anything but the seed (another data root, learning rate, threshold or
    epoch cap): their mean and interval would mix settings as if they were seeds of one; and runs on other data
    (``data=...``, ``data.root=...``) anywhere in the report, whose tables and figures would compare them. Runs
    without recorded overrides (from before run.json) cannot be told apart and are not checked.

    Raises:
        InputError: naming both folders and the overrides in which they differ.
    """
    first: dict[RunKey, tuple[str, set[str]]] = {}
    data: tuple[str, set[str]] | None = None
    for r in runs:
        recorded = set(r.get("overrides") or ()) or _overrides(r["dir"])
        if not recorded:
            continue
        shared = {o for o in recorded if override_key(o).split(".")[0] == "data"}
        if data is None:
            data = (r["dir"], shared)
        elif shared != data[1]:  # one report compares runs on one dataset: its tables put them side by side
            raise InputError(r["dir"], f"was trained on other data than {data[0]} (they differ in "
                                       f"{', '.join(sorted(shared ^ data[1]))}); one report compares runs on one "
                                       "dataset: report each dataset's runs from a folder of their own")
        setting = _setting(recorded)
        key = run_key(r)
        if key not in first:
            first[key] = (r["dir"], setting)
            continue
        other_dir, other = first[key]
        if setting != other:
            raise InputError(r["dir"], f"a seed of cell {key_name(key)} with other settings than {other_dir}: they "
                                       f"differ in {', '.join(sorted(setting ^ other))}; the report would pool them "
                                       "as seeds of one cell. Report each setting's runs from a folder of their own")


def scan_sweep(sweep_dir: str | Path, progress: bool = True) -> Sweep:
    """Read every job of a sweep (a progress bar over jobs) and the grid it was meant to cover."""
    root = Path(sweep_dir)
    runs, incomplete, broken_seeds = [], {}, []
    axes: dict[str, set[Any]] = {name: set() for name in AXES}
    jobs = _job_dirs(root)
    bar = progress and sys.stderr.isatty()  # a redirected report (or its one-line refusal) gets no bar fragments
    for job in tqdm(jobs, desc="reading runs", unit="run", disable=not bar, leave=False):
        record, why = _read_job(job)
        if record is not None:
            runs.append(record)
            key: RunKey | None = run_key(record)
        else:
            key, seed = _config_job(job)
            incomplete[key if key is not None else str(job.relative_to(root))] = why
            if key is not None and seed is not None:
                broken_seeds.append((key, seed, why))
        if key is not None:
            for name, value in zip(AXES, key):
                axes[name].add(value)
    candidates = {root / "multirun.yaml"} | {job.parent / "multirun.yaml" for job in jobs}
    seeds: set[int] = set()
    for multirun in sorted(p for p in candidates if p.is_file()):
        try:
            for name, values in sweep_axes(multirun).items():
                (seeds if name == "seed" else axes[name]).update(values)
        except Exception as err:  # noqa: BLE001 -- an unreadable multirun.yaml only loses the expected grid
            log.warning("%s: cannot read the sweep's overrides (%s)", multirun, err)
    runs.sort(key=lambda r: (_sort_key(run_key(r)), seed_of(r), r["dir"]))
    check_replicates(runs)
    check_cells(runs)
    done = {(run_key(r), seed_of(r)) for r in runs}
    done_keys = {k for k, _ in done}
    seeds_incomplete = {(k, seed): why for k, seed, why in broken_seeds if k in done_keys and (k, seed) not in done}
    seeds_incomplete |= {(k, seed): "absent: never started, or its folder was removed" for k in done_keys
                         for seed in seeds if (k, seed) not in done and (k, seed) not in seeds_incomplete}
    return Sweep(root=root, runs=runs, incomplete=incomplete, seeds_incomplete=seeds_incomplete,
                 axes={"model": ordered(axes["model"], MODEL_ORDER), "window": sorted(axes["window"]),
                       "scenario": ordered(axes["scenario"], SCENARIO_ORDER),
                       "inputs": ordered(axes["inputs"] or {DEFAULT_INPUTS}, INPUTS_ORDER)})


def _rank(value: str, order: Sequence[str]) -> int:
    return order.index(value) if value in order else len(order)


def _sort_key(key: RunKey) -> tuple:
    """The paper's order: scenario, model, window; the input sets of a model x window next to one another."""
    model, window, scenario, inputs = key
    return (_rank(scenario, SCENARIO_ORDER), scenario, _rank(model, MODEL_ORDER), model, window,
            _rank(inputs, INPUTS_ORDER), inputs)


def load_runs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete run (a metrics.json with areas) under ``sweep_dir``, in the paper's order."""
    return scan_sweep(sweep_dir, progress=False).runs


def paper_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs behind the paper's figures and claims: the single-date (``post``) ones when a sweep compares input
    sets, so that they stay comparable with the paper; every run otherwise."""
    if len(input_sets(runs)) > 1:
        post = [r for r in runs if run_key(r)[3] == DEFAULT_INPUTS]
        return post or runs
    return runs


def site_f1(run: dict[str, Any]) -> list[float]:
    """F1 on each site's test area (the pooled ``all`` area left out, as in the paper's mean F1; an area where F1
    is undefined, without any reference landslide, left out too)."""
    return [m["f1"] for area, m in run["areas"].items() if area != "all" and m["f1"] is not None]


def mean_site_f1(run: dict[str, Any]) -> float | None:
    """Mean F1 over the run's site test areas (the paper's mean F1, Figs. 10-11); None without any."""
    f1 = site_f1(run)
    return sum(f1) / len(f1) if f1 else None


def own_site_f1(run: dict[str, Any]) -> float | None:
    """F1 on the trained site's own test area; None for ``all``, which trains on every site."""
    s = run["scenario"]
    return run["areas"][s]["f1"] if s != "all" and s in run["areas"] else None  # None where F1 is undefined


def transfer_f1(run: dict[str, Any]) -> float | None:
    """Mean F1 on the other sites' test areas (pooled ``all`` left out): how a single-site model transfers; None
    for ``all``."""
    others = [m["f1"] for a, m in run["areas"].items() if a not in ("all", run["scenario"]) and m["f1"] is not None]
    return sum(others) / len(others) if run["scenario"] != "all" and others else None


def areas_of(runs: list[dict[str, Any]]) -> list[str]:
    """Test areas present in any run: the sites in the paper's order, the pooled ``all`` last."""
    seen = {a for r in runs for a in r["areas"]}
    sites = ordered(seen - {"all"}, AREA_ORDER)
    return sites + (["all"] if "all" in seen else [])


def scenario_title(scenario: str) -> str:
    trained = "the training areas of every site" if scenario == "all" else f"the {scenario} training area"
    paper = f" (paper Table {PAPER_TABLE[scenario]})" if scenario in PAPER_TABLE else ""
    return f"Scenario {scenario}: trained on {trained}{paper}"


def transfer_summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Mean F1 on a site's own test area vs on the other sites' test areas (single-site scenarios only)."""
    own, other = [], []
    for r in runs:
        if r["scenario"] == "all":
            continue
        for area, m in r["areas"].items():
            if area == "all" or m["f1"] is None:
                continue
            (own if area == r["scenario"] else other).append(m["f1"])
    return {"own_site_f1": sum(own) / len(own) if own else float("nan"),
            "other_site_f1": sum(other) / len(other) if other else float("nan")}
