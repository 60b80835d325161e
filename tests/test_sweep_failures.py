"""A sweep goes on past a failed job (issue 30): every launcher runs the good jobs, the failed job's run.json says
why, one summary line ends the sweep with exit 1, the report lists the failure, and the same command again reruns
only what failed. A bad value all jobs share is refused once, before any job starts."""

from __future__ import annotations

import json
import os

import pytest
from test_training import tiny, train

from slidemap.reporting.sweep import scan_sweep
from slidemap.sweep_status import JobState, summary_line, swept_keys

FAST = ("logger=none", "model.net.base_filters=8", "trainer.max_epochs=1", "trainer.precision=32-true")

LAUNCHERS = [
    pytest.param("basic", [], id="basic"),
    pytest.param("joblib", ["hydra.launcher.n_jobs=2"], id="joblib"),
    pytest.param("submitit_local", ["hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"],
                 id="submitit_local"),
]


def _jobs(sweep) -> dict[str, dict]:
    return {p.name: json.loads((p / "run.json").read_text()) for p in sweep.iterdir() if (p / "run.json").is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("launcher, extra", LAUNCHERS)
def test_a_failed_job_does_not_end_the_sweep(synthetic_root, tmp_path, launcher, extra):
    if launcher != "basic" and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores")
    sweep = tmp_path / "sweep"
    args = ["-m", f"hydra/launcher={launcher}", *extra, "window=48,32", "scenario=china", f"hydra.sweep.dir={sweep}",
            *tiny(synthetic_root, *FAST)]
    done = train(args, tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    summary = [line for line in done.stderr.splitlines() if line.startswith(f"sweep {sweep}:")]
    assert len(summary) == 1, done.stderr[-3000:]
    assert "1 of 2 jobs done, 1 failed: `window=48`: window: unsupported window 48; choose one of 32, 64, 128" \
        in summary[0]
    jobs = _jobs(sweep)
    assert jobs["unet-48-china"]["status"] == "failed"
    assert jobs["unet-48-china"]["error"] == "window: unsupported window 48; choose one of 32, 64, 128"
    assert "window=48" in jobs["unet-48-china"]["overrides"]
    assert "status" not in jobs["unet-32-china"] and (sweep / "unet-32-china" / "metrics.json").is_file()
    assert not (sweep / "unet-48-china" / "metrics.json").exists()

    report = scan_sweep(sweep, progress=False)
    assert [r["window"] for r in report.runs] == [32]
    assert ("model=unet window=48 scenario=china",
            "failed: window: unsupported window 48; choose one of 32, 64, 128") in report.missing()

    if launcher == "basic":  # the same command again: the finished job is skipped, the failed one runs again
        first = (sweep / "unet-32-china" / "metrics.json").stat().st_mtime_ns
        again = train(args, tmp_path)
        assert again.returncode == 1 and "1 of 2 jobs done, 1 failed" in again.stderr
        assert (sweep / "unet-32-china" / "metrics.json").stat().st_mtime_ns == first  # skipped, not retrained


@pytest.mark.slow
def test_a_rerun_that_succeeds_clears_the_failure(synthetic_root, tmp_path):
    """A job that failed for a reason since fixed (here: its data folder appears) runs and its run.json is clean."""
    sweep = tmp_path / "sweep"
    root = tmp_path / "sites"
    args = ["-m", "seed=0,1", "scenario=china", "window=32", "data=scenes", f"data.root={root}",
            f"hydra.sweep.dir={sweep}", *tiny(synthetic_root, *FAST)[1:]]
    first = train(args, tmp_path)
    assert first.returncode == 1 and "0 of 2 jobs done, 2 failed: `seed=0`: " in first.stderr, first.stderr[-2000:]
    assert all(r["status"] == "failed" and "sites folder not found" in r["error"] for r in _jobs(sweep).values())
    root.symlink_to(synthetic_root)
    second = train(args, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert all("status" not in r and "error" not in r for r in _jobs(sweep).values())


@pytest.mark.parametrize("shared, message", [
    ("threshold=2", "error: threshold: must lie in (0, 1), got 2 (refused before any job started)"),
    ("optimizer.lr=-1", "error: optimizer.lr: must be > 0, got -1 (refused"),
    ("seed=0,0", "error: seed: sweeps 0 twice; give each value once (refused before any job started)"),
    ("data=scenes", "error: data.root: missing"),
    ("data.root=/a,/b", "error: data.root: is left out of job folder names, so the jobs of this sweep would share one "
                        "folder: run one sweep per data.root value"),
    ("logger=csv,none", "error: logger: is left out of job folder names"),
])
def test_a_bad_setting_every_job_shares_is_refused_once_before_any_job(tmp_path, shared, message):
    sweep = tmp_path / "sweep"
    done = train(["-m", "window=32,64", shared, "logger=none", f"hydra.sweep.dir={sweep}"], tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(message) and "Traceback" not in done.stderr
    assert not sweep.exists()


def test_the_swept_keys_are_told_apart_from_shared_ones():
    assert swept_keys(["window=32,64", "model=unet,resunet", "seed=range(0,3)", "threshold=0.4", "+x=[1,2]",
                       "hydra/launcher=joblib"]) == {"window", "model", "seed"}


def test_the_summary_names_each_failed_job_by_its_axes(tmp_path):
    jobs = [JobState(tmp_path / "a", "done", None, ("model=unet", "window=32")),
            JobState(tmp_path / "b", "failed", "window: unsupported window 48", ("model=unet", "window=48")),
            JobState(tmp_path / "c", "unfinished", None, ("model=unet", "window=64"))]
    assert summary_line(jobs, {"window"}) == ("1 of 3 jobs done, 1 failed: `window=48`: window: unsupported window "
                                              "48, 1 without a result")
    many = [JobState(tmp_path / str(i), "failed", "boom", (f"seed={i}",)) for i in range(5)]
    assert summary_line(many, {"seed"}).endswith("`seed=2`: boom; 2 more (slidemap report lists them)")
