"""Run identity: what a run is (its overrides and its cell), kept in its folder so a re-run finds its own job.

A sweep job's folder is named by ``run_name`` plus every override outside the named axes (conf/hydra/default.yaml),
so any sweep axis -- seed, lr, epochs, a data seed -- keeps every job. The folder also keeps ``run.json``: the
overrides that define the run. A re-run into the folder skips the finished run or resumes the interrupted one only
when they are the same run; a folder holding another run's files is refused, never silently reused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from slidemap.errors import InputError
from slidemap.io import atomic_path, write_json
from slidemap.runs import RUN_FILE, job_overrides, run_cell, shaping_overrides
from slidemap.sweep_status import clear_failure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunIdentity:
    """``overrides``: the job's overrides that shape its result, sorted; ``cell``: model-window-scenario-inputs
    (plus the augmentation when not ``none``), what the seeds of one comparison share (W&B's group-by key, the
    report's replicate key)."""

    overrides: tuple[str, ...]
    cell: str


def run_identity(cfg: DictConfig, overrides: list[str] | None = None) -> RunIdentity:
    """The run's identity from its overrides (default: the Hydra job's) and its composed config."""
    given = job_overrides() if overrides is None else overrides
    return RunIdentity(tuple(shaping_overrides(given)), run_cell(cfg))


def claim_run_dir(out: Path, identity: RunIdentity) -> None:
    """Record ``identity`` in ``out/run.json``, or check that the folder already holds this same run.

    Raises:
        InputError: the folder holds files of a run with other overrides (another data root, say): resuming or
            skipping it would silently report that run as this one.
    """
    path = out / RUN_FILE
    if path.is_file():
        try:
            record = json.loads(path.read_text())
            recorded = tuple(record["overrides"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(path, f"unreadable run record ({type(err).__name__}); move the folder away or remove "
                                   "it to start this run afresh") from err
        if recorded != identity.overrides:
            raise InputError(out, f"holds another run (overrides {list(recorded)}), not this one "
                                  f"({list(identity.overrides)}); give this run its own folder (hydra.run.dir, or "
                                  "hydra.sweep.dir for a sweep)")
        clear_failure(path, record)  # runs again: the last attempt's failure is history
        return
    write_json(path, asdict(identity))


def stopped_by(trainer: pl.Trainer) -> str:
    """``early_stopping`` when the early-stopping callback ended training, else ``max_epochs`` (the cap).

    Ask right after ``fit``: validating or testing from a checkpoint restores the callbacks' state of that epoch.
    """
    stops = [c for c in trainer.callbacks if isinstance(c, pl.callbacks.EarlyStopping)]
    return "early_stopping" if any(c.stopped_epoch > 0 for c in stops) else "max_epochs"


def drop_resume_state(out: Path) -> None:
    """Remove ``checkpoints/last.ckpt`` once the run is complete: its optimiser state only serves a resume (it is
    as large as the best checkpoint again, half of a sweep's disk)."""
    (out / "checkpoints" / "last.ckpt").unlink(missing_ok=True)


def _moved(value: Any, old: str, new: Path) -> Any:
    """``value`` (a path, or a dict keyed by paths) with paths in folder ``old`` moved to ``new``."""
    if isinstance(value, dict):
        return {_moved(k, old, new): v for k, v in value.items()}
    if isinstance(value, str) and value and Path(value).parent == Path(old):
        return str(new / Path(value).name)
    return value


def relocate_resume_state(last: Path, folder: Path) -> bool:
    """Point the checkpoint callbacks' state in ``last`` at ``folder``, where the run's checkpoints lie now.

    ``last.ckpt`` records its checkpoints by absolute path. After a sweep is moved or copied, Lightning would
    restore the old folder's best path (and forget the best score), so the resumed run would test the original's
    weights, or fail once it is gone. Returns whether ``last`` was rewritten (atomically).
    """
    folder = folder.resolve()  # as Lightning keeps its dirpath
    state = torch.load(last, map_location="cpu", weights_only=False)
    changed = False
    for values in (state.get("callbacks") or {}).values():
        old = values.get("dirpath") if isinstance(values, dict) else None
        if not old or Path(old) == folder or Path(old).resolve() == folder.resolve():
            continue
        for key in ("dirpath", "best_model_path", "kth_best_model_path", "last_model_path", "best_k_models"):
            if key in values:
                values[key] = str(folder) if key == "dirpath" else _moved(values[key], old, folder)
        changed = True
    if changed:
        log.info("%s: the run's checkpoints now lie in %s (the run folder was moved or copied)", last, folder)
        with atomic_path(last) as tmp:
            torch.save(state, tmp)
    return changed


def identity_record(identity: RunIdentity) -> dict[str, Any]:
    """What metrics.json and the W&B config carry of the identity."""
    return {"cell": identity.cell, "overrides": list(identity.overrides)}
