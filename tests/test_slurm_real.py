"""The SLURM paths on a real (one-node) SLURM cluster: tests/cluster/slurm.sh starts one (`.ci/run` does).

A sweep through hydra/launcher=slurm runs as SLURM jobs; a job that hits its time limit is requeued and continues
from last.ckpt; `slidemap region --executor slurm` maps products as a job array, a cancelled task is recorded failed
and the same command completes it. Skipped, with the reason, where no cluster answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from test_region import engine_config, region_inputs, run  # noqa: F401 -- region_inputs is a fixture
from test_training import tiny, train

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

JOB = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]
"""Small SLURM jobs: two fit on this machine's cores at once."""


def _answer(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def cluster() -> None:
    """A SLURM cluster that accepts jobs and keeps accounts (submitit reads job states with sacct)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        pytest.skip("no SLURM on this machine: tests/cluster/slurm.sh start installs and starts one (needs root)")
    state = _answer("sinfo", "-h", "-o", "%T")
    if state.returncode or not re.search(r"idle|mixed|allocated", state.stdout):
        pytest.skip(f"the SLURM cluster does not answer (sinfo: {(state.stderr or state.stdout).strip()[:200]}); "
                    "start it with tests/cluster/slurm.sh start")
    accounts = _answer("sacct", "-n", "-X", "-S", "now")
    if accounts.returncode:
        pytest.skip(f"SLURM keeps no accounts (sacct: {accounts.stderr.strip()[:200]}); tests/cluster/slurm.sh "
                    "starts slurmdbd")


def sacct_states(array_id: str, wait_s: float = 60) -> dict[str, str]:
    """Task id -> SLURM state of a job (array) from SLURM's accounting, once no task is still running there (a
    task's result is on disk a moment before SLURM records its end)."""
    deadline = time.monotonic() + wait_s
    while True:
        out = _answer("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", array_id).stdout
        states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
        if not {"RUNNING", "COMPLETING"} & set(states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def submitit_ids(folder: Path) -> set[str]:
    """The SLURM job ids submitit's logs name (``Starting with JobEnvironment(job_id=12_0, ...``)."""
    text = "".join(p.read_text(errors="replace") for p in folder.rglob("*_log.*"))
    return set(re.findall(r"JobEnvironment\(job_id=([0-9_]+)", text))


def test_a_sweep_runs_as_slurm_jobs_and_the_report_reads_it(cluster, synthetic_root, tmp_path):
    sweep = tmp_path / "sweep"
    done = train(["-m", *JOB, "hydra.launcher.timeout_min=10", "scenario=china,japan", "window=32",
                  f"hydra.sweep.dir={sweep}",
                  *tiny(synthetic_root, "logger=none", "model.net.base_filters=8", "trainer.max_epochs=1")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for job in ("unet-32-china", "unet-32-japan"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["scenario"] == job.rsplit("-", 1)[1] and metrics["threads"] == 1  # cpus_per_task
    ids = submitit_ids(sweep / ".submitit")
    arrays = {i.split("_")[0] for i in ids}
    assert len(ids) == 2 and len(arrays) == 1  # one array of two tasks
    assert sacct_states(arrays.pop()) == {i: "COMPLETED" for i in ids}
    report = subprocess.run([sys.executable, "-m", "slidemap.cli", "report", str(sweep)], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    text = (sweep / "report" / "report.md").read_text()
    assert "2 complete run(s)" in text and "china" in text and "japan" in text


def test_a_search_runs_its_trials_as_slurm_jobs(cluster, synthetic_root, tmp_path):
    pytest.importorskip("optuna", reason="the search needs slidemap[search]")
    sweep = tmp_path / "search"
    done = train(["-m", "search=default", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                  "~hydra.sweeper.params.augment", *JOB, "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}",
                  *tiny(synthetic_root, "logger=none", "model.net.base_filters=8", "trainer.max_epochs=1",
                        "window=32", "scenario=china")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = json.loads((sweep / "search.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete"]
    for t in trials:  # each trial's objective is its run's validation F1
        assert t["value"] == pytest.approx(json.loads((sweep / t["run_dir"] / "metrics.json").read_text())["val_f1"])
    ids = submitit_ids(sweep / ".submitit")
    assert len(ids) == 2 and set(sacct_states(next(iter(ids)).split("_")[0]).values()) == {"COMPLETED"}


def test_a_job_past_its_time_limit_is_requeued_and_continues_from_last_ckpt(cluster, monkeypatch, synthetic_root,
                                                                           tmp_path):
    """timeout_min=1 on a run of over a minute (6 epochs of 8 s, tests/slow_epochs.py, after ~10 s of start-up):
    SLURM signals the job (USR2, signal_delay_s before the limit; its 30 s periodic check makes that 25-55 s in),
    submitit requeues it, and the next start resumes from last.ckpt."""
    sweep, epochs = tmp_path / "sweep", 6
    tests = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p))
    done = train(["-m", *JOB, "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=5",
                  "hydra.launcher.max_num_timeout=4", f"hydra.sweep.dir={sweep}", "window=32",
                  # SLURM truncates a requeued job's log files on its next start: keep both starts' lines
                  "+hydra.launcher.additional_parameters.open-mode=append",
                  *tiny(synthetic_root, "logger=none", "model.net.base_filters=8", f"trainer.max_epochs={epochs}",
                        f"trainer.min_epochs={epochs}", "callbacks.early_stopping.patience=100",
                        "+callbacks.slow._target_=slow_epochs.SlowEpochs", "+callbacks.slow.seconds=8")],
                 tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    job = sweep / "unet-32-all"
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["epochs"] == epochs and str(metrics["resumed_from"]).endswith("checkpoints/last.ckpt")
    logs = "".join(p.read_text(errors="replace") for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "this job is timed-out" in logs and "Requeued" in logs  # submitit's own lines
    # the job's log (appended by every start): epochs in order, each once but for one cut short by the signal
    log = (job / "train.log").read_text()
    assert log.count("resumes from") >= 1
    trained: list[int] = []
    for part in log.split("resumes from"):
        started = [int(n) for n in re.findall(r"epoch (\d+)/\d+:", part)]
        assert not trained or not started or started[0] >= trained[-1], (trained, started)  # nothing before the cut
        trained += started
    assert sorted(set(trained)) == list(range(1, epochs + 1)) and len(trained) - len(set(trained)) <= 1


def _region(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "slidemap.cli", "region", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_region_runs_as_a_job_array_and_a_cancelled_task_is_rerun(cluster, capsys, region_inputs, tmp_path):
    common = ["--ckpt", *region_inputs["ckpt"], "--s2", *region_inputs["s2"][:2], "--dem", *region_inputs["dem"]]
    local, array = tmp_path / "local", tmp_path / "array"
    code, _, err = run(capsys, *common, "--out", str(local))
    assert code == 0, err[-2000:]
    # one task at a time: the second waits in the queue, where scancel finds it
    config = engine_config(tmp_path / "slurm.yaml", timeout_min=10, cpus_per_task=1, mem_gb=2, array_parallelism=1)
    args = [*common, "--out", str(array), "--executor", "slurm", "--executor-config", str(config)]
    proc = _region(*args)
    manifest = array / "manifest.json"
    deadline = time.monotonic() + 120
    ids: dict[str, str] = {}
    while time.monotonic() < deadline and proc.poll() is None and len(ids) < 2:
        try:
            ids = {j["name"]: j["job_id"] for j in json.loads(manifest.read_text())["jobs"] if j.get("job_id")}
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    assert len(ids) == 2, proc.communicate()[1][-2000:]
    assert subprocess.run(["scancel", ids["T51QUF"]], timeout=30).returncode == 0
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "1 of 2 job(s) failed" in err, err[-2000:]
    jobs = {j["name"]: j for j in json.loads(manifest.read_text())["jobs"]}
    assert jobs["T51QTF"]["status"] == "done" and jobs["T51QUF"]["status"] == "failed", jobs
    # SLURM's word, not submitit's pointer to a missing log; or, when the cancelled task never left its array's
    # queue record, no word at all from SLURM (then the parent no longer waits for one forever)
    error = jobs["T51QUF"]["error"]
    assert "ended without a result (state CANCELLED" in error or "left SLURM's queue without a result" in error
    states = sacct_states(ids["T51QUF"].split("_")[0])
    assert states[ids["T51QTF"]] == "COMPLETED" and states.get(ids["T51QUF"], "CANCELLED").startswith("CANCELLED")

    again = _region(*args)  # the same command: only the failed task runs
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    jobs = {j["name"]: j for j in json.loads(manifest.read_text())["jobs"]}
    assert all(j["status"] == "done" for j in jobs.values()) and jobs["T51QTF"]["job_id"] == ids["T51QTF"]
    assert jobs["T51QUF"]["job_id"] != ids["T51QUF"]
    for layer in ("probability", "binary"):
        with rasterio.open(local / f"region_{layer}.tif") as a, rasterio.open(array / f"region_{layer}.tif") as b:
            assert a.transform == b.transform and a.crs == b.crs
            np.testing.assert_array_equal(a.read(1), b.read(1))

