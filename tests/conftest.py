"""Shared fixtures: the synthetic sites, composed Hydra configs (as users run them, shrunk), a tiny trained run.

Like lightning-hydra-template's ``cfg_train``: tests compose the real ``conf/`` with Hydra's compose API, shrink it
(tiny U-Net, 2 short fp32 epochs, no logger) and call the run function in-process; a subprocess is used only where
the command line itself is under test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

REPO = Path(__file__).resolve().parents[1]

TINY_TRAINING = ("logger=none", "trainer.max_epochs=2", "trainer.min_epochs=1",
                 "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=2", "trainer.precision=32-true",
                 "trainer.enable_progress_bar=false")
"""Overrides that make a train.py run take seconds: what every in-process training test starts from."""

TINY_UNET = "model.net.base_filters=8"
"""A narrow U-Net (the default model): with :data:`TINY_TRAINING`, a run of a few seconds."""


def constant_keys_unnamed(args: list[str] | tuple[str, ...]) -> str:
    """A Hydra override that leaves the constant task overrides of ``args`` out of sweep folder names.

    A job's folder carries every override outside the named axes (conf/hydra/default.yaml); tests shrink runs
    with constant overrides (epochs, batches, filters) that would otherwise lengthen every name. Swept keys (a
    value with a comma) stay in the names.
    """
    defaults = OmegaConf.load(REPO / "conf" / "hydra" / "default.yaml").job.config.override_dirname.exclude_keys
    constant = [a.split("=", 1)[0].lstrip("+~") for a in args
                if "=" in a and not a.startswith(("-", "hydra.")) and "," not in a.split("=", 1)[1]]
    return f"hydra.job.config.override_dirname.exclude_keys=[{','.join([*defaults, *constant])}]"


def compose_config(name: str, output_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """``conf/<name>.yaml`` composed with ``overrides``, its Hydra part set up for a run into ``output_dir``."""
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.mode = RunMode.RUN
    return cfg


@contextmanager
def hydra_run(cfg: DictConfig) -> Iterator[DictConfig]:
    """Make ``cfg`` the current Hydra config (as ``@hydra.main`` does), and forget it afterwards."""
    HydraConfig.instance().set_config(cfg)
    try:
        yield cfg
    finally:
        HydraConfig.instance().cfg = None  # type: ignore[assignment]


def run_training(cfg: DictConfig) -> Path:
    """``train.py`` in-process: run the job of ``cfg`` and return its run folder."""
    from slidemap.training.run import run

    with hydra_run(cfg):
        run(cfg)
    return Path(cfg.hydra.runtime.output_dir)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three synthetic sites at the default scale (0.1) and seed (0), written once (~2 s)."""
    from slidemap.data.synthetic import ensure_synthetic

    return ensure_synthetic(tmp_path_factory.mktemp("synthetic") / "sites", scale=0.1, seed=0)


@pytest.fixture
def cfg_train(synthetic_root: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """``cfg_train(*overrides)``: the tiny training config on the synthetic sites, run folder ``tmp_path/run``."""
    def make(*overrides: str) -> DictConfig:
        model = () if any(o.startswith("model=") for o in overrides) else (TINY_UNET,)
        return compose_config("train", tmp_path / "run",
                              [f"data.root={synthetic_root}", *TINY_TRAINING, *model, *overrides])

    return make


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    """A U-Net (8 base filters) trained on the synthetic sites for 2 short fp32 epochs, once per session."""
    out = tmp_path_factory.mktemp("tiny-unet") / "run"
    return run_training(compose_config("train", out, [f"data.root={synthetic_root}", *TINY_TRAINING, TINY_UNET]))


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> dict:
    """An active W&B run that records what is logged to it: key -> ("table", columns, rows) or ("image", path)."""
    import sys
    import types

    logged: dict = {}
    fake = types.ModuleType("wandb")
    fake.Table = lambda columns, data: ("table", columns, data)
    fake.Image = lambda path, caption=None: ("image", Path(path))
    fake.run = types.SimpleNamespace(log=logged.update)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return logged
