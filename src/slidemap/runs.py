"""Where a Hydra run writes and how its result record marks it complete: shared by train.py and eval.py."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from slidemap.io import write_json

METRICS_FILE = "metrics.json"
"""A run's result record; written last and atomically, so its presence marks the run complete."""

RUN_FILE = "run.json"
"""A run's identity: the overrides that shape its result (:mod:`slidemap.training.identity`)."""

SEARCH_FILE = "search.json"
"""A search sweep's record of its trials (written by :mod:`slidemap.search`, read by the report without Optuna)."""


PRESENTATION_KEYS = ("logger", "resume", "trainer.enable_progress_bar", "data.num_workers", "hydra.launcher.n_jobs",
                     "search")
"""Overrides that change how a run is shown or executed, never its result: not part of its identity."""


def override_key(override: str) -> str:
    """The key an override sets (``+trainer.x=1`` -> ``trainer.x``): one parse for every reader of overrides."""
    return override.split("=", 1)[0].lstrip("+~")


def job_overrides() -> list[str]:
    """The job's own overrides as Hydra passed them (a sweep job's values, not the sweep's lists); [] outside Hydra."""
    if not HydraConfig.initialized():
        return []  # as typed: an override holding ${...} is not resolved here (its failure is the check's to name)
    return [str(o) for o in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False) or []]


def shaping_overrides(overrides: list[str]) -> list[str]:
    """``overrides`` that shape a run's result (the presentation keys left out), sorted: a run's identity."""
    return sorted(o for o in overrides if override_key(o) not in PRESENTATION_KEYS)


PAPER_LOSS = "bce"
"""The paper's loss; what a run from before the ``loss`` group used."""


def loss_name(cfg: DictConfig) -> str:
    """The ``loss`` group's choice (``bce`` when the config has none)."""
    return str((cfg.get("loss") or {}).get("name", PAPER_LOSS))


def run_cell(cfg: DictConfig) -> str:
    """model-window-scenario-inputs (plus the augmentation when not ``none``, the loss when not ``bce``): what the
    seeds of one comparison share (W&B's group-by key, the report's replicate key)."""
    inputs = str((cfg.get("inputs") or {}).get("name", "post"))
    augment = str((cfg.get("augment") or {}).get("name", "none"))
    cell = f"{cfg.model.name}-{int(cfg.window)}-{cfg.scenario.name}-{inputs}"
    cell = cell if augment == "none" else f"{cell}-{augment}"
    loss = loss_name(cfg)
    return cell if loss == PAPER_LOSS else f"{cell}-{loss}"


MAX_SUFFIX = 200
"""Longer override suffixes are cut and end in a hash of the whole: a folder name stays under the 255 bytes file
systems allow."""


def run_suffix(override_dirname: str) -> str:
    """``-<overrides>`` for a sweep job's folder (``""`` without any): Hydra's ``override_dirname`` of the overrides
    outside the named axes, safe as one folder name ('/' in a value would nest folders)."""
    if not override_dirname:
        return ""
    safe = override_dirname.replace("/", "_")
    if len(safe) > MAX_SUFFIX:
        safe = f"{safe[:MAX_SUFFIX - 9]}-{hashlib.sha1(override_dirname.encode()).hexdigest()[:8]}"
    return f"-{safe}"


if not OmegaConf.has_resolver("run_suffix"):  # conf/hydra/default.yaml names sweep jobs with it
    OmegaConf.register_new_resolver("run_suffix", run_suffix)


def output_dir(cfg: DictConfig) -> Path:
    """The run's own directory (Hydra's output dir, or ``cfg.paths.output_dir`` when run outside Hydra)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.output_dir)


def finite_or_null(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None: an undefined metric is ``null`` in JSON (bare
    ``NaN`` is not JSON: strict parsers and jq refuse it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def write_metrics(out_dir: Path, payload: dict[str, Any]) -> Path:
    """Write ``metrics.json`` (the run's result record; its presence marks the run complete); undefined values are
    ``null``."""
    path = out_dir / METRICS_FILE
    write_json(path, finite_or_null(payload))
    return path


def completed_run(out: Path) -> dict[str, Any] | None:
    """The run's result record if the run finished (metrics.json is written last, atomically), else None."""
    path = out / METRICS_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("areas") else None
