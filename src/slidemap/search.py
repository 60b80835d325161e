"""A hyper-parameter search that survives interruption: hydra-optuna-sweeper with a study that resumes.

The stock Optuna sweeper keeps its study in any storage, but the same command after an interruption asks for
``n_trials`` more trials, and trials that were running when the sweeper died (Ctrl-C, SIGKILL, a lost login node)
stay ``RUNNING`` forever. :class:`ResumableSearch` counts what the study already holds: the command again (same
``hydra.sweep.dir``, the study in ``optuna.db`` there) asks only for the trials still missing; an interrupted trial is
marked failed (``interrupted``) and its settings are asked again first, so its run folder continues from its
``last.ckpt``; the sampler is reseeded, or a seeded one would draw the first run's settings again. A trial whose
job failed (slidemap's sweep jobs return NaN: :mod:`slidemap.sweep_status`) is recorded ``FAIL`` and counts as
done: the search goes on past it.

After every batch the sweep folder gets ``search.json`` (each trial's state, objective, settings and run folder;
the best trial), which ``slidemap report`` reads without Optuna.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from collections.abc import Iterable
from typing import Any

from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf

from slidemap.io import write_json
from slidemap.runs import SEARCH_FILE

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"
"""User attribute of a trial that was running when its sweeper died: failed, not counted, asked again."""
RUN_DIR = "run_dir"
"""User attribute: the trial's run folder, relative to the sweep folder."""


def finished(trial: Any) -> bool:
    """A trial that counts towards ``n_trials``: complete, or failed by its own job (not interrupted)."""
    import optuna

    state = optuna.trial.TrialState
    return trial.state == state.COMPLETE or (trial.state == state.FAIL and not trial.user_attrs.get(INTERRUPTED))


def requeue_interrupted(study: Any, space: Iterable[str]) -> int:
    """Mark the trials a dead sweeper left running as failed (``interrupted``) and enqueue their settings again,
    so the next trials asked are those; returns how many were enqueued. A trial killed before all of ``space`` was
    drawn for it (between the ask and its last setting) never started a job: it is marked too, with nothing to ask
    again (enqueuing part of its settings would pin those and draw the rest anew)."""
    import optuna

    names = set(space)
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    again = 0
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state(trial._trial_id, optuna.trial.TrialState.FAIL)
        if trial.params and names <= set(trial.params):
            study.enqueue_trial(dict(trial.params))
            again += 1
    return again


def objective(ret: Any) -> float | None:
    """The job's objective (validation F1), or None when the job failed (raised, NaN, not a number)."""
    try:
        value = float(ret.return_value)
    except Exception:  # noqa: BLE001 -- the job's own exception: the trial failed, the search goes on
        return None
    return value if math.isfinite(value) else None


def run_folder(ret: Any, sweep_dir: Path) -> str | None:
    """The job's run folder relative to the sweep folder (None when the launcher did not say)."""
    out = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir", default=None) if ret.hydra_cfg else None
    out = out or (OmegaConf.select(ret.hydra_cfg, "runtime.output_dir", default=None) if ret.hydra_cfg else None)
    if not out:
        return None
    try:
        return str(Path(out).resolve().relative_to(sweep_dir.resolve()))
    except ValueError:
        return str(out)


def search_record(study: Any, n_trials: int, space: list[str], fixed: dict[str, Any]) -> dict[str, Any]:
    """What ``search.json`` holds: the study, its search space, every trial and the best one."""
    trials = []
    for t in study.get_trials(deepcopy=False):
        trials.append({"number": t.number, "state": t.state.name.lower(), "value": t.value,
                       "params": dict(t.params), "run_dir": t.user_attrs.get(RUN_DIR),
                       "interrupted": bool(t.user_attrs.get(INTERRUPTED))})
    complete = [t for t in trials if t["state"] == "complete"]
    maximise = study.direction.name == "MAXIMIZE"
    best = max(complete, key=lambda t: t["value"] if maximise else -t["value"]) if complete else None
    return {"study": study.study_name, "objective": "val_f1", "direction": study.direction.name.lower(),
            "n_trials": n_trials, "space": space, "fixed": {k: str(v) for k, v in fixed.items()},
            "trials": trials, "best": best}


def tell(study: Any, trial: Any, value: float | None) -> None:
    """Record the trial's objective, or its failure (``value`` None). A grid sampler calls ``study.stop()`` on its
    last point, which optuna 2 refuses outside ``optimize``: the trial is recorded all the same."""
    import optuna

    try:
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, value)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise


class ResumableSearch(OptunaSweeperImpl):
    """hydra-optuna-sweeper's sweep, resumed from its storage: see the module docstring."""

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)  # the SQLite file lives there
        self._process_searchspace_config()
        space, fixed = create_params_from_overrides([*self._parse_sweeper_params_config(), *arguments])
        space = {**(self.search_space_distributions or {}), **space}
        for name in fixed:
            space.pop(name, None)
        if isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in space.items()}
            self.sampler = self.sampler(grid)  # a grid has as many trials as points
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                    directions=self._get_directions(), load_if_exists=True)
        again = requeue_interrupted(study, space)
        if study.get_trials(deepcopy=False):  # a seeded sampler would draw the first run's settings again
            study.sampler.reseed_rng()
        done = sum(finished(t) for t in study.get_trials(deepcopy=False))
        todo = max(0, self.n_trials - done)
        log.info("search %s (%s): %d of %d trials done, %d interrupted asked again; %d to go", study.study_name,
                 self.storage, done, self.n_trials, again, todo)
        write_json(sweep_dir / SEARCH_FILE, search_record(study, self.n_trials, sorted(space), fixed))
        while todo > 0:
            batch = [study.ask() for _ in range(min(todo, self.n_jobs))]
            overrides = self._configure_trials(batch, space, fixed)
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for trial, ret in zip(batch, returns):
                folder = run_folder(ret, sweep_dir)
                if folder:
                    trial.set_user_attr(RUN_DIR, folder)
                value = objective(ret)
                if value is None:
                    log.warning("trial %d failed (%s): recorded, the search goes on", trial.number, folder)
                tell(study, trial, value)
            todo -= len(batch)
            write_json(sweep_dir / SEARCH_FILE, search_record(study, self.n_trials, sorted(space), fixed))
        result = search_record(study, self.n_trials, sorted(space), fixed)
        best = result["best"]
        failed = sum(t["state"] == "fail" and not t["interrupted"] for t in result["trials"])
        log.info("search %s: %d trials, %d failed; best val F1 %s (trial %s: %s)", sweep_dir,
                 sum(finished(t) for t in study.get_trials(deepcopy=False)), failed,
                 f"{best['value']:.4f}" if best else "none", best["number"] if best else "-",
                 best["params"] if best else {})
