"""A sweep goes on past a failed job: the job's folder records why it failed, the sweep ends with a summary.

A researcher's 72-run sweep must not die at run 3 of a typo in one axis value. Each job of a multirun that fails
(bad input, or a bug) writes ``status: failed`` and its one-line error into its ``run.json`` and returns to the
launcher instead of ending the process; the other jobs run. :class:`SweepSummary` (a Hydra callback, registered in
conf/hydra/default.yaml, so it runs in the launching process whatever the launcher: basic, joblib, submitit local
or SLURM) checks the settings every job shares once before any job starts, and after the last job prints one
summary line and ends the sweep with exit status 1 when a job failed. The same command again (with the same
``hydra.sweep.dir``) skips the finished jobs and reruns the failed and missing ones.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from slidemap.config_checks import SCHEMAS, check_config
from slidemap.errors import InputError
from slidemap.io import write_json
from slidemap.runs import METRICS_FILE, RUN_FILE, SEARCH_FILE, override_key

log = logging.getLogger(__name__)

FAILED = "failed"
"""``run.json``'s ``status`` of a job that ended without a result; a finished job is marked by ``metrics.json``."""


@dataclass(frozen=True)
class JobState:
    """One job folder of a sweep: ``status`` is ``done``, ``failed`` or ``unfinished`` (started, no result)."""

    folder: Path
    status: str
    error: str | None
    overrides: tuple[str, ...]


def record_failure(out: Path, overrides: list[str], cell: str | None, error: str) -> None:
    """Mark the job in ``out`` as failed with its one-line ``error``, keeping the run record's identity.

    A folder holding another run's record (the failure may be exactly that) is left as it is."""
    path = out / RUN_FILE
    record: dict[str, Any] = {"overrides": sorted(overrides), "cell": cell}
    if path.is_file():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(record, dict) or sorted(record.get("overrides") or []) != sorted(overrides):
            return
    record.update(status=FAILED, error=error.removeprefix("error: "))
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, record)


def clear_failure(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The run record of a job that runs again, without the last attempt's failure (rewritten when it had one)."""
    if "status" not in record and "error" not in record:
        return record
    kept = {k: v for k, v in record.items() if k not in ("status", "error")}
    write_json(path, kept)
    return kept


def job_state(folder: Path) -> JobState:
    """What a job folder holds: a result, a recorded failure, or neither."""
    record: dict[str, Any] = {}
    try:
        loaded = json.loads((folder / RUN_FILE).read_text())
        record = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    overrides = tuple(str(o) for o in record.get("overrides") or ())
    if (folder / METRICS_FILE).is_file():
        return JobState(folder, "done", None, overrides)
    if record.get("status") == FAILED:
        return JobState(folder, FAILED, str(record.get("error") or "no error recorded"), overrides)
    return JobState(folder, "unfinished", None, overrides)


def sweep_jobs(sweep_dir: Path) -> list[JobState]:
    """Every job folder directly under ``sweep_dir`` (a folder Hydra made: it holds ``.hydra/``)."""
    if not sweep_dir.is_dir():
        return []
    return [job_state(p) for p in sorted(sweep_dir.iterdir()) if (p / ".hydra").is_dir()]


def summary_line(jobs: list[JobState], axes: set[str] = frozenset(), shown: int = 3) -> str:  # type: ignore[assignment]
    """``22 of 24 jobs done, 2 failed: `window=48 ...`: <error>; ...`` (the first ``shown`` failures, each by its
    values of the sweep's ``axes``, or by all its overrides without axes)."""

    def name(job: JobState) -> str:
        on_axes = [o for o in job.overrides if override_key(o).replace("/", ".") in axes]
        return " ".join(on_axes or job.overrides) or job.folder.name

    done = sum(j.status == "done" for j in jobs)
    failed = [j for j in jobs if j.status == FAILED]
    unfinished = sum(j.status == "unfinished" for j in jobs)
    line = f"{done} of {len(jobs)} jobs done"
    if failed:
        items = [f"`{name(j)}`: {j.error}" for j in failed[:shown]]
        more = f"; {len(failed) - shown} more (slidemap report lists them)" if len(failed) > shown else ""
        line += f", {len(failed)} failed: {'; '.join(items)}{more}"
    if unfinished:
        line += f", {unfinished} without a result"
    return line


def swept_keys(overrides: list[str]) -> set[str]:
    """The keys and config groups a sweep gives several values (``window=32,64``, ``model=unet,resunet``)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return {o.key_or_group.split("@")[0].replace("/", ".") for o in parsed if o.is_sweep_override()}


def check_distinct_values(overrides: list[str]) -> None:
    """Refuse a sweep value given twice (``seed=0,0``): both jobs would run into one folder, at once under a
    parallel launcher."""
    for o in OverridesParser.create().parse_overrides(overrides):
        if not o.is_sweep_override() or o.is_interval_sweep():  # an interval is a search's, not a list
            continue
        values = list(o.sweep_string_iterator())
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise InputError(o.key_or_group, f"sweeps {', '.join(twice)} twice; give each value once")


def check_folder_names(config: DictConfig, swept: set[str]) -> None:
    """Refuse sweeping a key that job folder names leave out (``data.root``, ``logger``, ...) and the run name does
    not hold: every job would run into one folder, the later ones taken as finished or overwriting the first."""
    left_out = OmegaConf.select(config, "hydra.job.config.override_dirname.exclude_keys", default=None) or []
    raw = OmegaConf.to_container(config, resolve=False).get("run_name", "")  # type: ignore[union-attr]
    named = {m.split(".")[0] for m in re.findall(r"\$\{([A-Za-z_][\w.]*)", str(raw))}
    for key in sorted(swept):
        if key in left_out and key.split(".")[0] not in named:
            raise InputError(key, f"is left out of job folder names, so the jobs of this sweep would share one "
                                  f"folder: run one sweep per {key} value (each with its own hydra.sweep.dir)")


def sweep_axes(config: DictConfig) -> set[str]:
    """The swept keys of a multirun's config (its task overrides)."""
    return swept_keys([str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False) or []])


def check_shared_settings(config: DictConfig, schema: str) -> None:
    """Refuse, once and before any job starts, a bad setting every job of the sweep shares."""
    check_distinct_values([str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False) or []])
    skip = sweep_axes(config)
    check_folder_names(config, skip)
    job_cfg = OmegaConf.masked_copy(config, [k for k in config.keys() if k != "hydra"])
    check_config(job_cfg, SCHEMAS[schema], skip=skip, resolve=False)


class SweepSummary(Callback):
    """Hydra callback of a multirun: shared settings checked before the first job, one summary line after the last.

    The settings schema is the entry point's (``hydra.job.config_name``: train or eval, :data:`SCHEMAS`)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        schema = str(OmegaConf.select(config, "hydra.job.config_name", default=""))
        if schema not in SCHEMAS:
            return
        try:
            check_shared_settings(config, schema)
        except InputError as err:
            print(f"error: {' '.join(str(err).split())} (refused before any job started)",
                  file=sys.stderr)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = sweep_jobs(sweep_dir)
        line = summary_line(jobs, sweep_axes(config))
        if (sweep_dir / SEARCH_FILE).is_file():  # a search's failed trials are recorded failed in its study
            log.info("search %s: %s; slidemap report %s lists the trials", sweep_dir, line, sweep_dir)
            return
        if any(j.status != "done" for j in jobs):
            print(f"sweep {sweep_dir}: {line}; the same command with hydra.sweep.dir={sweep_dir} reruns only "
                  "the failed and unfinished jobs", file=sys.stderr)
            sys.exit(1)
        log.info("sweep %s: %s", sweep_dir, line)
