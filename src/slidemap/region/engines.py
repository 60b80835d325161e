"""Run a region's jobs as a submitit job array: on this machine (``submitit-local``) or on a SLURM cluster.

Every array task runs :func:`slidemap.region.jobs.execute_job`, the function the local pool runs, so a job's outputs
do not depend on the engine. The parent keeps the manifest: it marks the jobs ``running`` before submitting (a parent
killed after that leaves them to be rerun), waits on the futures and records each result as it arrives. A task that
dies (killed, out of time or memory) is recorded ``failed`` with its one line and runs again with the same command.

The engine's parameters come from a small YAML file (``conf/region/slurm.yaml``): submitit's shared names
(``timeout_min``, ``cpus_per_task``, ``mem_gb``, ...), SLURM's own without a prefix (``partition``,
``array_parallelism``, ``account``, ...), as in ``conf/hydra/launcher/slurm.yaml``. submitit's pickles and logs go
to ``OUT/.submitit/``.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from slidemap.errors import InputError
from slidemap.region.jobs import RUNNING, SUBMITIT, JOBS, JobResult, Manifest, execute_job, record

log = logging.getLogger(__name__)

EXECUTORS = ("local", "submitit-local", "slurm")
SHARED = {"timeout_min": int, "mem_gb": (int, float), "nodes": int, "cpus_per_task": int, "gpus_per_node": int,
          "tasks_per_node": int, "name": str}
"""submitit's parameters common to every cluster (``AutoExecutor``), with their types."""
INIT = {"max_num_timeout": int}
"""Parameters of the executor itself rather than of its jobs."""
POLL_S = {"submitit-local": 1.0, "slurm": 30.0}
"""How often the parent asks whether a task finished (SLURM's accounting should not be hammered)."""


def default_config(kind: str) -> Path:
    """``conf/region/<kind>.yaml`` of this source tree."""
    return Path(__file__).resolve().parents[3] / "conf" / "region" / f"{kind}.yaml"


def slurm_parameters() -> set[str]:
    """The SLURM-only parameter names submitit accepts (partition, array_parallelism, account, qos, ...)."""
    from submitit.slurm.slurm import SlurmExecutor

    return set(SlurmExecutor._valid_parameters())


def read_config(path: str | Path) -> dict[str, Any]:
    """An engine's YAML parameters, checked by name and type.

    Raises:
        InputError: a missing or unreadable file, or a key submitit does not know (one line naming it).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "executor config not found (give --executor-config FILE)")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InputError(path, f"unreadable executor config ({type(err).__name__})") from err
    if not isinstance(config, dict):
        raise InputError(path, "executor config must be a mapping of parameter: value")
    known = set(SHARED) | set(INIT) | slurm_parameters()
    unknown = sorted(str(k) for k in config if k not in known)
    if unknown:
        raise InputError(path, f"unknown executor parameter(s) {', '.join(unknown)}; submitit knows "
                               f"{', '.join(sorted(SHARED))} and SLURM's (partition, array_parallelism, account, ...)")
    for key, types in {**SHARED, **INIT}.items():
        value = config.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise InputError(path, f"{key}: expected a number{'' if key != 'name' else ' or text'}, got {value!r}")
    return {k: v for k, v in config.items() if v is not None}


def check_executor(kind: str, config_path: str | None) -> dict[str, Any]:
    """The engine's parameters, refused in one line before anything is written: an unknown engine, a bad config,
    or ``slurm`` where SLURM's ``sbatch`` is not installed. ``local`` has none."""
    if kind not in EXECUTORS:
        raise InputError("--executor", f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
    if kind == "local":
        if config_path:
            raise InputError("--executor-config", "goes with --executor submitit-local or slurm")
        return {}
    if kind == "slurm" and shutil.which("sbatch") is None:
        raise InputError("--executor", "slurm: no sbatch on this machine; run slidemap region on the cluster's "
                                       "login node, or use --executor local or submitit-local here")
    return read_config(config_path or default_config(kind))


def make_executor(kind: str, folder: Path, config: dict[str, Any]) -> Any:
    """A submitit ``AutoExecutor`` for ``kind`` with ``config``'s parameters (SLURM's prefixed ``slurm_``)."""
    import submitit

    cluster = {"submitit-local": "local", "slurm": "slurm"}[kind]
    init = {f"{cluster}_{k}": v for k, v in config.items() if k in INIT}
    params = {k if k in SHARED else f"slurm_{k}": v for k, v in config.items() if k not in INIT}
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **init)
    executor.update_parameters(**{"name": "slidemap-region", **params})
    return executor


def one_line(err: BaseException) -> str:
    """The last line of a task's error (submitit's carry the whole remote traceback); for a task that ended without
    a result (cancelled, killed, out of time or memory) the state SLURM gives it, not submitit's pointer to a log."""
    state = re.search(r"has not produced any output \(state: ([^)]*)\)", str(err))
    if state:
        return f"the task ended without a result (state {state.group(1).strip()}); its log is under {SUBMITIT}/"
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(err).__name__)[:500]


def left_slurm(futures: Sequence[Any]) -> set[str]:
    """The job ids among ``futures`` that SLURM neither queues nor accounts for: a task cancelled while it waited
    in its array's queue leaves no record, so submitit would wait on its state (UNKNOWN) forever."""
    unknown = {f.job_id for f in futures if f.state == "UNKNOWN"}
    if not unknown:
        return set()
    arrays = sorted({job_id.split("_")[0] for job_id in unknown})
    try:
        queued = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)], capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return set()
    if queued.returncode and "Invalid job id" not in queued.stderr:
        return set()  # SLURM did not answer: nothing is known to be gone
    return unknown - set(queued.stdout.split())


def run_submitit(manifest: Manifest, out: Path, dem: Sequence[str], model: Sequence[str], options: Sequence[str],
                 kind: str, config: dict[str, Any], progress: Callable[[int], Any] | None = None) -> int:
    """Run every job not yet done as one submitit job array and record the results; returns how many failed.

    On SLURM a task that left the queue without a result or an account (cancelled before it started) is recorded
    failed after two polls that miss it, instead of being waited on forever."""
    # absolute paths: a cluster's task may start in another folder
    todo = [dict(job, s2=[str(Path(p).resolve()) for p in job["s2"]]) for job in manifest.pending()]
    if not todo:
        return 0
    executor = make_executor(kind, out / SUBMITIT, config)
    threads = int(config.get("cpus_per_task") or 1)
    (out / JOBS).mkdir(parents=True, exist_ok=True)
    for job in todo:  # before submitting: a parent killed from here on leaves them to be rerun
        manifest.set(job["name"], status=RUNNING, error=None)
    n = len(todo)
    futures = executor.map_array(execute_job, todo, [out] * n, [list(dem)] * n, [list(model)] * n,
                                 [list(options)] * n, [threads] * n)
    names = {id(future): job["name"] for future, job in zip(futures, todo)}
    for future, job in zip(futures, todo):
        manifest.set(job["name"], job_id=future.job_id)
    log.info("region: %d job(s) submitted to %s (logs in %s)", n, kind, out / SUBMITIT)
    failed = 0
    pending, missed = list(futures), set()  # type: ignore[var-annotated]
    try:
        while pending:
            gone = left_slurm(pending) if kind == "slurm" else set()
            for future in list(pending):
                if future.done():
                    try:
                        result = future.result()
                    except Exception as err:  # noqa: BLE001 -- a task that died: submitit's errors vary by engine
                        result = JobResult(names[id(future)], False, one_line(err), None)
                elif future.job_id in gone & missed:
                    result = JobResult(names[id(future)], False, "the task left SLURM's queue without a result or "
                                       "an account (cancelled before it started?)", None)
                else:
                    continue
                pending.remove(future)
                record(manifest, result)
                failed += 0 if result.ok else 1
                if progress:
                    progress(1)
            missed = gone
            if pending:
                time.sleep(POLL_S[kind])
    except BaseException:  # Ctrl-C or SIGTERM: the tasks go too; the manifest keeps them to rerun
        for future in futures:
            if not future.done():
                future.cancel(check=False)
        raise
    return failed
