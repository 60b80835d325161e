"""The data layer's modules moved into rooms (data/sites, tiling, loading, patchsets): what was written before the
move still works, and checkpoints never depended on where a data module lives."""

from __future__ import annotations

import importlib
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.utils import get_class, instantiate

import slidemap.data
from slidemap.data import MOVED
from slidemap.data.loading.datamodule import SiteDataModule
from slidemap.data.patchsets.folder import PatchFolderDataModule
from slidemap.data.patchsets.landslide4sense import Landslide4SenseDataModule
from slidemap.data.tiling.patches import Normaliser

DATA = Path(slidemap.data.__file__).parent


def test_every_old_name_points_to_a_module_and_shadows_none() -> None:
    assert len(MOVED) == 33
    for old, new in MOVED.items():
        assert (DATA / f"{new.replace('.', '/')}.py").is_file(), new
        assert not (DATA / f"{old}.py").exists() and not (DATA / old).exists(), old


@pytest.mark.parametrize("old", ["reader", "patch_set", "scene"])
def test_an_old_module_name_imports_the_same_module(old: str) -> None:
    sys.modules.pop(f"slidemap.data.{old}", None)
    with pytest.warns(DeprecationWarning, match=rf"slidemap\.data\.{old} is now slidemap\.data\.{MOVED[old]}"):
        module = importlib.import_module(f"slidemap.data.{old}")
    assert module is importlib.import_module(f"slidemap.data.{MOVED[old]}")
    assert module.__name__ == module.__spec__.name == f"slidemap.data.{MOVED[old]}"  # the real module, untouched


def test_a_module_outside_the_data_layer_is_not_taken_for_an_old_name() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("reader")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("slidemap.data.sites.patch_set")


def test_the_targets_of_configs_written_before_the_move_still_build(tmp_path: Path) -> None:
    """A run's .hydra/config.yaml from before the move names the data classes by their old modules."""
    assert get_class("slidemap.data.landslide4sense.Landslide4SenseDataModule") is Landslide4SenseDataModule
    assert get_class("slidemap.data.patch_folder.PatchFolderDataModule") is PatchFolderDataModule
    cfg = compose_config("train", tmp_path, ["data.root=sites", "window=32"])
    cfg.data._target_ = "slidemap.data.datamodule.SiteDataModule"
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, SiteDataModule) and datamodule.window == 32


def test_a_pickle_that_names_an_old_module_loads() -> None:
    """Whatever was pickled before the move (a queued job's arguments, a user's cache) finds its class."""
    norm = Normaliser(("red", "nir"), np.array([0.1, 0.3], np.float32), np.array([0.05, 0.1], np.float32))
    new = pickle.dumps(norm, protocol=0)  # text protocol: module names stand alone on their lines
    old = new.replace(b"slidemap.data.tiling.patches\n", b"slidemap.data.patches\n")
    assert old != new
    loaded = pickle.loads(old)
    assert type(loaded) is Normaliser and loaded.channels == ("red", "nir") and loaded.mean.tolist() == [
        pytest.approx(0.1), pytest.approx(0.3)]


def test_a_checkpoint_names_no_data_module(tiny_run: Path) -> None:
    """What train.py writes holds plain values and tensors: a checkpoint from before the move loads unchanged."""
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    with zipfile.ZipFile(ckpt) as archive:
        pickled = b"".join(archive.read(n) for n in archive.namelist() if n.endswith(".pkl"))
    assert b"slidemap.models.UNet" in pickled and b"slidemap.data" not in pickled
    assert set(torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]["data_info"]) >= {
        "channels", "window", "normaliser"}
