"""Hydra launchers: joblib and submitit's local executor run the sweep's jobs in parallel, each in its folder."""

from __future__ import annotations

import json

import pytest
from test_training import tiny, train

pytestmark = pytest.mark.slow

JOBS = ["unet-32-china", "unet-32-japan"]


def _check_sweep(sweep, threads: int) -> None:
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) == JOBS
    for job in JOBS:
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["scenario"] == job.rsplit("-", 1)[1] and set(metrics["areas"]) >= {"china", "japan", "all"}
        assert metrics["threads"] == threads


@pytest.mark.parametrize("launcher, extra, threads", [
    ("joblib", ["hydra.launcher.n_jobs=2"], 1),  # 2 cores shared by 2 parallel jobs
    ("submitit_local", ["hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"], 1),
])
def test_parallel_launchers_run_the_sweep(synthetic_root, tmp_path, launcher, extra, threads):
    import os

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores")
    sweep = tmp_path / "sweep"
    done = train(["-m", f"hydra/launcher={launcher}", *extra, "scenario=china,japan", "window=32",
                  f"hydra.sweep.dir={sweep}",
                  *tiny(synthetic_root, "logger=none", "model.net.base_filters=8", "trainer.max_epochs=1")],
                 tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    _check_sweep(sweep, threads)
    if launcher == "submitit_local":
        assert list((sweep / ".submitit").rglob("*_log.out")), "submitit wrote no job logs"


def test_slurm_launcher_config_composes(tmp_path):
    from hydra import compose, initialize_config_dir
    from test_training import REPO

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.cpus_per_task, launcher.max_num_timeout) == ("gpu", 8, 3)
