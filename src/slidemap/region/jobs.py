"""Run a region's jobs on this machine and keep ``manifest.json`` true at every moment.

Each job is the ``slidemap map`` command itself, run as a child process into a tagged temporary folder in ``jobs/``
(:func:`slidemap.io.tmp_prefix`: this host and process, so a killed run's are recognised and removed) renamed to
``jobs/<job>`` when it succeeds: the same readers, masks and options as mapping one product, and a job folder is
either complete or absent. The manifest is rewritten atomically on every status change, so a SIGKILL at any moment
loses at most the jobs in flight: the next run finds them ``running`` with no complete folder, and runs them again.
Locally, jobs run in a pool of worker threads (each waits on its child process), the machine's cores divided among
them as the joblib launcher divides them among sweep jobs; :mod:`slidemap.region.engines` runs the same
:func:`execute_job` as a submitit job array instead (its own machine, or a SLURM cluster).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slidemap.errors import InputError
from slidemap.io import remove_stale, signals_deferred, tmp_prefix, write_json
from slidemap.region.plan import Footprint, Job

MANIFEST = "manifest.json"
JOBS = "jobs"
SUBMITIT = ".submitit"
REGION_FILES = (MANIFEST, JOBS, "region_*", SUBMITIT)
"""What ``slidemap region`` writes in its folder (names or glob patterns): all ``--force`` removes, and all an existing
``--out`` may hold."""
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


def job_dir(out: Path, name: str) -> Path:
    return out / JOBS / name


class Manifest:
    """The region's record: the command's inputs and each job's inputs, outputs and status (thread-safe)."""

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path, self.record, self._lock = path, record, threading.Lock()

    @classmethod
    def create_or_resume(cls, out: Path, inputs: dict[str, Any], jobs: Sequence[Job]) -> "Manifest":
        """A new manifest, or the existing one of the same region (same inputs), its unfinished jobs made pending.

        Raises:
            InputError: ``out`` holds the manifest of another region (other inputs).
        """
        path = out / MANIFEST
        if path.is_file():
            record = read_manifest(out)
            if record.get("inputs") != inputs:
                raise InputError(path, "holds another region (other products, DEM, checkpoint or options); give "
                                       "this region its own --out, or --force to start over there")
            for job in record["jobs"]:
                complete = job_dir(out, job["name"]).is_dir()
                if job["status"] != DONE or not complete:
                    job.update(status=PENDING, error=None)
        else:
            record = {"inputs": inputs, "jobs": [
                {"name": j.name, "s2": list(j.s2), "date": j.date, "footprint": asdict(j.footprint),
                 "out": f"{JOBS}/{j.name}", "status": PENDING, "error": None, "seconds": None, "peak_gib": None}
                for j in jobs]}
        manifest = cls(path, record)
        manifest.save()
        return manifest

    def save(self) -> None:
        write_json(self.path, self.record)

    def set(self, name: str, **changes: Any) -> None:
        with self._lock:
            next(j for j in self.record["jobs"] if j["name"] == name).update(changes)
            self.save()

    def pending(self) -> list[dict[str, Any]]:
        return [j for j in self.record["jobs"] if j["status"] != DONE]


def remove_region_files(out: Path) -> list[str]:
    """Start a region folder over (``--force``): remove the entries of :data:`REGION_FILES`, nothing else."""
    removed = []
    for entry in sorted(out.iterdir()) if out.is_dir() else []:
        if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in REGION_FILES):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry.name)
    return removed


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest of a region folder; one line when there is none or it is damaged."""
    import json

    path = out / MANIFEST
    if not path.is_file():
        raise InputError(out, "no manifest.json: not a region folder written by slidemap region")
    try:
        record = json.loads(path.read_text())
        assert isinstance(record.get("jobs"), list)
    except (OSError, ValueError, AssertionError) as err:
        raise InputError(path, f"unreadable manifest ({type(err).__name__})") from err
    return record


def footprint_of(job: dict[str, Any]) -> Footprint:
    fp = job["footprint"]
    return Footprint(fp["crs"], tuple(fp["bounds"]))  # type: ignore[arg-type]


def map_command(job: dict[str, Any], dem: Sequence[str], model: Sequence[str], options: Sequence[str],
                out: Path) -> list[str]:
    """The ``slidemap map`` command line of one job, writing into ``out``; ``model`` is what it maps with
    (``--ckpt CKPT...``, or ``--engine onnxruntime --model MODEL``)."""
    return [sys.executable, "-m", "slidemap.cli", "map", *model, "--s2", *job["s2"], "--dem", *dem,
            "--out", str(out), "--name", job["name"], *options]


def last_error_line(stderr: str) -> str:
    """The child's one-line error (``slidemap map: error: ...``), else its last line."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [ln.split("error: ", 1)[1] for ln in lines if "error: " in ln]
    return (errors or lines or ["failed without a message"])[-1][:500]


@dataclass(frozen=True)
class JobResult:
    """What one job's run reports back to the manifest: success, its error line, how long it took."""

    name: str
    ok: bool
    error: str | None = None
    seconds: float | None = None
    peak_gib: float | None = None
    """The peak resident memory of the job's ``slidemap map`` process (to size a cluster's ``mem_gb``)."""


def execute_job(job: dict[str, Any], out: Path, dem: Sequence[str], model: Sequence[str], options: Sequence[str],
                threads: int) -> JobResult:
    """Map one job into a temporary ``jobs/.<name>.slidemap-tmp-<host>-<pid>-partial``, renamed to ``jobs/<name>``
    when it succeeded.

    The one per-job function of every engine (a pool thread here, a submitit array task on a node), so a job's
    outputs do not depend on where it ran. It touches no manifest: the parent records the result it returns.
    """
    final = job_dir(out, job["name"])
    partial = final.with_name(f"{tmp_prefix(job['name'])}partial")  # this process's own: never another try's
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent)  # the partial folders of killed runs on this host
    shutil.rmtree(final, ignore_errors=True)  # not done (the manifest says so): an incomplete earlier try
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: wait4 below gives the child's own peak memory
        child = subprocess.Popen(map_command(job, dem, model, options, partial), stdout=subprocess.DEVNULL,
                                 stderr=stderr, text=True, env=env)
        try:
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:  # interrupted: the child goes too, the job stays to be rerun
            child.kill()
            child.wait()
            raise
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        errors = stderr.read()
    seconds, peak = round(time.perf_counter() - start, 1), round(usage.ru_maxrss / 2**20, 3)  # KiB -> GiB
    if child.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        return JobResult(job["name"], False, last_error_line(errors), seconds, peak)
    with signals_deferred():
        if final.exists():  # a try orphaned by a killed parent finished meanwhile: same inputs, same maps
            shutil.rmtree(final)
        os.replace(partial, final)
    return JobResult(job["name"], True, None, seconds, peak)


def record(manifest: Manifest, result: JobResult) -> None:
    """A finished job's status in the manifest."""
    manifest.set(result.name, status=DONE if result.ok else FAILED, error=result.error, seconds=result.seconds,
                 peak_gib=result.peak_gib)


def run_job(manifest: Manifest, job: dict[str, Any], out: Path, dem: Sequence[str], model: Sequence[str],
            options: Sequence[str], threads: int) -> bool:
    """One job on this machine: ``running`` in the manifest, mapped, then ``done`` or ``failed``."""
    manifest.set(job["name"], status=RUNNING, error=None)
    result = execute_job(job, out, dem, model, options, threads)
    record(manifest, result)
    return result.ok


def run_jobs(manifest: Manifest, out: Path, dem: Sequence[str], model: Sequence[str], options: Sequence[str],
             workers: int = 1, progress: Callable[[int], Any] | None = None) -> int:
    """Run every job not yet done, ``workers`` at a time; returns how many failed."""
    todo = manifest.pending()
    if not todo:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(todo)))
    threads = max(1, cores // workers)
    (out / JOBS).mkdir(parents=True, exist_ok=True)
    failed = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_job, manifest, job, out, dem, model, options, threads) for job in todo]
        for future in as_completed(futures):
            failed += 0 if future.result() else 1
            if progress:
                progress(1)
    return failed
