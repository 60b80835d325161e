"""Ensembles and test-time views: mean and standard deviation on hand-made models, the written uncertainty layer,
and bad ensembles refused in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import torch
from torch import nn

import fake_sites as fs
from checkpoints import CHANNELS, save_checkpoint, unet_config
from slidemap.cli import main
from slidemap.data.tiling.patches import Normaliser
from slidemap.errors import InputError
from slidemap.mapping.checkpoint import TrainedModel, load_checkpoint
from slidemap.mapping.ensemble import TTA_VIEWS, Ensemble, apply_view, undo_view
from slidemap.mapping.mosaic import predict_mosaic
from slidemap.training.calibrate import rewrite_calibration

NORM = Normaliser(tuple(CHANNELS), np.zeros(5, np.float32), np.ones(5, np.float32))


def logit(p: float | np.ndarray) -> float | np.ndarray:
    return np.log(p / (1 - p))


class Constant(nn.Module):
    """Logit ``value`` at every pixel, whatever the input."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], 1, *x.shape[2:])


class ColumnRamp(nn.Module):
    """Probability ``ramp[c]`` at column c of the tile (not flip-invariant: views disagree)."""

    def __init__(self, ramp: np.ndarray) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.from_numpy(logit(ramp).astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], 1, x.shape[2], x.shape[3])


def member(net: nn.Module, temperature: float = 1.0, channels: tuple[str, ...] = tuple(CHANNELS),
           window: int = 16, normaliser: Normaliser = NORM) -> TrainedModel:
    return TrainedModel(net=net, model_name="hand", channels=channels, window=window, normaliser=normaliser,
                        threshold=0.5, path=Path(f"hand-{id(net)}.ckpt"), temperature=temperature)


def test_pair_of_models_mean_and_sd_with_their_temperatures():
    """p = 0.5 and p = 0.75 (logit 2 ln 3 at T = 2): mean 0.625, sd 0.125 at every pixel."""
    pair = Ensemble([member(Constant(0.0)), member(Constant(2 * math.log(3)), temperature=2.0)])
    mean, sd = pair(np.zeros((3, 5, 16, 16), np.float32))
    np.testing.assert_allclose(mean, 0.625, atol=1e-6)
    np.testing.assert_allclose(sd, 0.125, atol=1e-6)
    single_mean, single_sd = Ensemble([member(Constant(2 * math.log(3)), temperature=2.0)])(np.zeros((1, 5, 8, 8)))
    np.testing.assert_allclose(single_mean, 0.75, atol=1e-6)
    assert single_sd is None


def test_mosaic_of_a_pair_blends_moments_without_seams():
    """Constant members: overlapping tiles agree, so the blended sd is the members' 0.125 everywhere."""
    pair = Ensemble([member(Constant(logit(0.2))), member(Constant(logit(0.6)))])
    valid = np.ones((40, 37), bool)
    valid[0, 0] = False
    mean, sd = predict_mosaic(pair, np.zeros((5, 40, 37), np.float32), valid, 16, overlap=0.5, batch_size=4)
    np.testing.assert_allclose(mean[valid], 0.4, atol=1e-6)
    np.testing.assert_allclose(sd[valid], 0.2, atol=1e-6)
    assert np.isnan(mean[0, 0]) and np.isnan(sd[0, 0])


def test_views_are_undone_exactly():
    tiles = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    for name, views in TTA_VIEWS.items():
        seen = {apply_view(tiles, v).tobytes() for v in views}
        assert len(seen) == len(views), name  # each view is a different image
        for v in views:
            np.testing.assert_array_equal(undo_view(apply_view(tiles, v), v), tiles)


def test_flips_and_d4_average_a_ramp_by_hand():
    """A model that says ramp[c] at column c whatever it sees: its left-right flipped view, put back, says
    ramp[w-1-c]; the quarter turns of d4 put the ramp along the rows. flips: 2 x ramp[c], 2 x ramp[w-1-c];
    d4: each of ramp[c], ramp[w-1-c], ramp[r], ramp[h-1-r] twice."""
    ramp = np.linspace(0.1, 0.9, 8)
    model = member(ColumnRamp(ramp), window=8)
    x = np.zeros((1, 5, 8, 8), np.float32)
    col, rev = ramp[None, :], ramp[::-1][None, :]
    mean, sd = Ensemble([model], "flips")(x)
    np.testing.assert_allclose(mean[0], np.broadcast_to((col + rev) / 2, (8, 8)), atol=1e-6)
    np.testing.assert_allclose(sd[0], np.broadcast_to(np.abs(col - rev) / 2, (8, 8)), atol=1e-6)
    mean, sd = Ensemble([model], "d4")(x)
    four = np.stack(np.broadcast_arrays(col, rev, col.T, rev.T))
    np.testing.assert_allclose(mean[0], four.mean(0), atol=1e-6)
    np.testing.assert_allclose(sd[0], four.std(0), atol=1e-6)
    mean, sd = Ensemble([model], "none")(x)
    np.testing.assert_allclose(mean[0], np.broadcast_to(col, (8, 8)), atol=1e-6)
    assert sd is None


@pytest.mark.parametrize("other, message", [
    (dict(channels=("B2", "B3", "B4", "B8", "dem")), "differ in input channels"),
    (dict(window=32), "differ in window: 32 px vs 16 px"),
    (dict(normaliser=Normaliser(tuple(CHANNELS), np.ones(5, np.float32), np.ones(5, np.float32))),
     "differ in normalisation"),
])
def test_incompatible_members_are_refused(other, message):
    with pytest.raises(InputError, match=message):
        Ensemble([member(Constant(0.0)), member(Constant(1.0), **other)])


def test_unknown_tta_is_refused():
    with pytest.raises(InputError, match=r"--tta: unknown test-time augmentation 'd8'; choose one of none, flips, d4"):
        Ensemble([member(Constant(0.0))], "d8")


# ---------------------------------------------------------------- slidemap map with several checkpoints


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[Path]:
    """Two untrained U-Net checkpoints of different seeds (one calibrated), as two seeds of one sweep cell."""
    folder = tmp_path_factory.mktemp("seeds")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(folder / f"seed{seed}.ckpt", unet_config(5, 4)))
    rewrite_calibration(paths[1], {"temperature": 1.5, "fitted_on": "validation"})
    return paths


def test_map_with_two_checkpoints_and_d4_writes_the_uncertainty(capsys, seeds, tmp_path):
    scene = fs.make_site(tmp_path / "scenes" / "event", labels=None)
    out = tmp_path / "maps"
    code = main(["map", "--ckpt", *map(str, seeds), "--tta", "d4", "--scene", str(scene), "--out", str(out),
                 "--precision", "32"])
    printed = capsys.readouterr().out.split()
    assert code == 0
    assert [Path(p).name for p in printed] == ["event_probability.tif", "event_binary.tif", "event_uncertainty.tif",
                                               "event_landslides.gpkg"]
    with rasterio.open(out / "event_probability.tif") as p, rasterio.open(out / "event_uncertainty.tif") as u:
        prob, sd = p.read(1), u.read(1)
        assert u.profile["dtype"] == "float32" and math.isnan(u.nodata) and u.overviews(1)
    assert np.array_equal(np.isnan(prob), np.isnan(sd)) and np.nanmax(sd) > 0 and np.nanmax(sd) <= 0.5
    # the same as the in-memory mosaic of the ensemble (the map reads by strips)
    from slidemap.data.sites.reader import read_site
    from slidemap.mapping.mosaic import site_reader

    ensemble = Ensemble([load_checkpoint(s) for s in seeds], "d4")
    site = read_site(scene, require_label=False)
    read, valid = site_reader(site, ensemble.normaliser)
    mean, spread = predict_mosaic(ensemble, read(0, site.shape[0])[0], valid, ensemble.window)
    np.testing.assert_allclose(prob, mean, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(sd, spread, atol=1e-5, equal_nan=True)
    fields = pyogrio.read_info(out / "event_landslides.gpkg")["fields"].tolist()
    assert fields[-2:] == ["mean_probability", "mean_uncertainty"]


@pytest.mark.parametrize("extra, message", [
    (["--tta", "rot90"], "--tta: unknown test-time augmentation 'rot90'; choose one of none, flips, d4"),
    (["--tta", "flips"], "ensemble members differ in input channels"),
])
def test_bad_ensemble_is_one_line_and_writes_nothing(capsys, seeds, tmp_path, extra, message):
    other = save_checkpoint(tmp_path / "dem.ckpt", unet_config(5, 4), channels=["B2", "B3", "B4", "B8", "dem"])
    scene = fs.make_site(tmp_path / "scenes" / "event", labels=None)
    out = tmp_path / "maps"
    code = main(["map", "--ckpt", str(seeds[0]), str(other), "--scene", str(scene), "--out", str(out), *extra])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not out.exists()


# ---------------------------------------------------------------- eval.py with an ensemble and test-time views


def eval_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        return compose("eval", overrides=list(overrides))


@pytest.mark.slow
def test_eval_scores_an_ensemble_with_views_and_its_calibration(tiny_run, synthetic_root, tmp_path):
    """A list of checkpoints with flips (the spread comes from the views), scored as their mean on one site; ECE
    from the written probability map; calibrated=false drops the temperatures."""
    from slidemap.data.sites.reader import read_site
    from slidemap.data.tiling.split import split_sites
    from slidemap.evaluation.calibration import ece, reliability_bins
    from slidemap.evaluation.evaluate import run

    best = tiny_run / "checkpoints" / "best.ckpt"
    one_site = ["data.sites=[taiwan]", "check_normaliser=false", f"data.root={synthetic_root}"]  # seconds, not minutes
    run(eval_cfg(f"ckpt_path=[{best}]", "tta=flips", f"paths.output_dir={tmp_path}", *one_site))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["tta"] == "flips" and len(metrics["checkpoints"]) == 1
    assert list(metrics["areas"]) == ["taiwan", "all"]
    assert metrics["calibration"]["temperatures"] == [load_checkpoint(best).temperature]
    site = read_site(synthetic_root / "taiwan")
    block = split_sites({"taiwan": site})["taiwan"].test
    with rasterio.open(tmp_path / "taiwan_probability.tif") as p, \
            rasterio.open(tmp_path / "taiwan_uncertainty.tif") as u:
        prob, sd = p.read(1), u.read(1)
    valid = site.valid[block.slices]
    taiwan = metrics["areas"]["taiwan"]
    assert taiwan["ece"] == pytest.approx(ece(reliability_bins(prob, site.label[block.slices], valid)), abs=1e-9)
    assert taiwan["mean_uncertainty"] == pytest.approx(float(np.nanmean(sd[valid])), rel=1e-5)
    assert taiwan["mean_uncertainty"] > 0
    assert "mean_uncertainty" in pyogrio.read_info(tmp_path / "taiwan_landslides.gpkg")["fields"].tolist()
    raw = tmp_path / "raw"
    run(eval_cfg(f"ckpt_path={best}", "calibrated=false", f"paths.output_dir={raw}", *one_site))
    uncalibrated = json.loads((raw / "metrics.json").read_text())
    assert uncalibrated["calibration"]["temperatures"] == [1.0] and not (raw / "taiwan_uncertainty.tif").exists()


def test_eval_unknown_tta_is_one_line(tmp_path):
    from slidemap.evaluation.evaluate import run

    with pytest.raises(InputError, match=r"^tta: unknown test-time augmentation 'd2'; choose one of none, flips, d4$"):
        run(eval_cfg("ckpt_path=/nowhere.ckpt", "tta=d2", f"paths.output_dir={tmp_path}"))
    assert not any(tmp_path.iterdir())
