"""A resumable hyper-parameter search (hydra/sweeper=search, conf/search/): a SIGKILLed search continues its study
without repeating finished trials; a crashed trial is recorded failed and the search goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_training import REPO, tiny, train

pytest.importorskip("optuna", reason="the search needs slidemap[search] (hydra-optuna-sweeper, optuna)")
pytestmark = pytest.mark.slow

TINY = ["logger=none", "model.net.base_filters=8", "trainer.max_epochs=1", "window=32", "scenario=china"]


def search_args(root: Path, sweep: Path, *extra: str) -> list[str]:
    """A 3-trial search over lr and pos_weight (no augmentation axis: each trial takes seconds)."""
    return ["-m", "search=default", "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep}",
            "~hydra.sweeper.params.augment", *tiny(root, *TINY), *extra]


def record(sweep: Path) -> dict:
    return json.loads((sweep / "search.json").read_text())


def study_trials(sweep: Path) -> list:
    import optuna

    return optuna.load_study(study_name="slidemap", storage=f"sqlite:///{sweep}/optuna.db").get_trials()


def kill_after_first_trial(args: list[str], sweep: Path, cwd: Path, timeout: float = 300) -> str:
    """Start the search and SIGKILL its whole process group once the study holds one complete trial; returns its
    log."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    log = cwd / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if any(t["state"] == "complete" for t in record(sweep)["trials"]):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return log.read_text()


def test_a_killed_search_resumes_and_keeps_its_finished_trials(synthetic_root, tmp_path):
    sweep = tmp_path / "search"
    args = search_args(synthetic_root, sweep)
    log = kill_after_first_trial(args, sweep, tmp_path)
    assert (sweep / "search.json").is_file(), log[-3000:]
    before = record(sweep)
    assert len([t for t in before["trials"] if t["state"] == "complete"]) < 3, "killed too late"
    first = next(t for t in before["trials"] if t["state"] == "complete")
    stamp = (sweep / first["run_dir"] / "metrics.json").stat().st_mtime_ns

    done = train(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = study_trials(sweep)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert len(complete) == 3 and len(trials) == 3 + len(interrupted) and len(interrupted) <= 1
    assert complete[0].number == first["number"] and complete[0].value == first["value"]  # kept, not rerun
    assert (sweep / first["run_dir"] / "metrics.json").stat().st_mtime_ns == stamp
    space = set(complete[0].params)
    for t in interrupted:  # the trial the kill cut short is asked again, with its settings (if all were drawn:
        assert t.state.name == "FAIL"  # a kill between the ask and the last setting leaves no job to continue)
        assert set(t.params) != space or any(c.params == t.params for c in complete)
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == 3  # no settings drawn twice
    for t in complete:  # the objective is the run's validation F1
        metrics = json.loads((sweep / t.user_attrs["run_dir"] / "metrics.json").read_text())
        assert t.value == pytest.approx(metrics["val_f1"])
        assert f"optimizer.lr={t.params['optimizer.lr']}" in metrics["overrides"]
    assert record(sweep)["best"]["value"] == max(t.value for t in complete)

    again = train(args, tmp_path)  # a finished search: nothing more is asked
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(study_trials(sweep)) == len(trials)


def test_a_crashed_trial_is_recorded_failed_and_the_search_goes_on_under_joblib(synthetic_root, tmp_path):
    sweep = tmp_path / "search"
    done = train(["-m", "search=default", "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=2",
                  "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                  f"hydra.sweep.dir={sweep}", "hydra.sweeper.params=null", "window=choice(32,48)",
                  *tiny(synthetic_root, *[o for o in TINY if not o.startswith("window=")])], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    states = {t.params["window"]: t.state.name for t in study_trials(sweep)}
    assert states == {32: "COMPLETE", 48: "FAIL"}
    failed = next(t for t in record(sweep)["trials"] if t["state"] == "fail")
    run = json.loads((sweep / failed["run_dir"] / "run.json").read_text())
    assert run["status"] == "failed" and "window" in run["error"]


def test_only_trials_killed_after_all_their_settings_are_asked_again():
    import optuna

    from slidemap.search import INTERRUPTED, requeue_interrupted

    study = optuna.create_study(direction="maximize")
    lr = optuna.distributions.LogUniformDistribution(1e-4, 1e-2)
    pos = optuna.distributions.UniformDistribution(1.0, 10.0)
    study.ask()  # killed right after the ask: no settings
    partial = study.ask()
    partial._suggest("optimizer.lr", lr)  # killed between two settings: no job started
    full = study.ask()
    full._suggest("optimizer.lr", lr)
    full._suggest("module.pos_weight", pos)
    assert requeue_interrupted(study, ["optimizer.lr", "module.pos_weight"]) == 1
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "FAIL", "WAITING"]
    assert all(t.user_attrs.get(INTERRUPTED) for t in trials[:3])
    again = study.ask()
    assert again._suggest("optimizer.lr", lr) == full.params["optimizer.lr"]
    assert again._suggest("module.pos_weight", pos) == full.params["module.pos_weight"]
