"""Issue 30's probe (hardening, round two): each case an independent probe found, as a user would meet it.

Every case ends in one line naming what to fix and exit 2 (or a correct result), and a refused run leaves no run
folder and no metrics.json. The sweep that goes on past a failed job is in tests/test_sweep_failures.py; the patch
dataset cases (an (H, W, C) .npy, a broken link, all-NaN test images) are in tests/test_patch_folder.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from test_hardening import ENV, hydra_entry, one_line

import fake_sites as fs
from checkpoints import save_checkpoint
from conftest import REPO
from run_records import metrics_record
from slidemap.cli import main

# ---------------------------------------------------------------- train.py: every setting checked once, one line

TRAIN_REFUSED = [  # (id, overrides, the line's start)
    ("lr-negative", ["optimizer.lr=-1"], "error: optimizer.lr: must be > 0, got -1"),
    ("lr-not-a-number", ["optimizer.lr=fast"], "error: optimizer.lr: must be a number > 0, got 'fast'"),
    ("lr-zero", ["optimizer.lr=0"], "error: optimizer.lr: must be > 0, got 0"),
    ("betas-out-of-range", ["optimizer.betas=[0.9,1.5]"], "error: optimizer.betas[1]: must lie in [0, 1), got 1.5"),
    ("weight-decay-negative", ["+optimizer.weight_decay=-0.1"], "error: optimizer.weight_decay: must be >= 0"),
    ("window-not-a-number", ["window=big"], "error: window: must be an integer >= 1, got 'big'"),
    ("window-float", ["window=64.0"], "error: window: must be an integer >= 1, got 64.0"),
    ("num-workers-negative", ["data.num_workers=-2"], "error: data.num_workers: must be an integer >= 0, got -2"),
    ("max-epochs-zero", ["trainer.max_epochs=0"], "error: trainer.max_epochs: must be an integer >= 1, got 0"),
    ("pos-weight-negative", ["module.pos_weight=-3"], "error: module.pos_weight: must be > 0, got -3"),
    ("eval-batch-size-zero", ["data.eval_batch_size=0"], "error: data.eval_batch_size: must be an integer >= 1"),
    ("seed-too-large", ["seed=4294967296"], "error: seed: must be an integer in [0, 4294967295]"),
    ("synthetic-seed-negative", ["data.synthetic.seed=-1"], "error: data.synthetic.seed: must be an integer in"),
    ("augment-gain-too-large", ["augment=full", "augment.gain=1.5"], "error: augment.gain: must lie in [0, 1)"),
    ("augment-flips-not-a-flag", ["augment=d4", "augment.flips=maybe"], "error: augment.flips: must be true or false"),
    ("patience-negative", ["callbacks.early_stopping.patience=-1"],
     "error: callbacks.early_stopping.patience: must be an integer >= 0"),
    # a config's class or arguments refused by its library (found by the independent probe)
    ("optimizer-class-unknown", ["optimizer._target_=torch.optim.Nope"],
     "error: optimizer._target_: cannot find the class 'torch.optim.Nope'"),
    ("optimizer-argument-unknown", ["+optimizer.foo=1"],
     "error: optimizer: cannot build torch.optim.Adam: Adam.__init__() got an unexpected keyword argument 'foo'"),
    ("trainer-devices-zero", ["trainer=ddp", "trainer.devices=0"], "error: trainer.devices: must be an integer >= 1"),
    ("trainer-argument-refused", ["+trainer.num_nodes=0"],
     "error: trainer: cannot build pytorch_lightning.trainer.trainer.Trainer: "),
    ("network-without-parameters", ["model=custom", "model.net._target_=torch.nn.Identity"],
     "error: model.net: torch.nn.Identity has no trainable parameters"),
    ("monitor-unknown", ["callbacks.early_stopping.monitor=val/bogus"],
     "error: callbacks.early_stopping.monitor: unknown monitor 'val/bogus'; choose one of val/loss, val/f1, train/loss"),
    ("train-sites-empty", ["scenario.train_sites=[]"], "error: scenario.train_sites: must be a non-empty list of sites"),
    ("channels-empty", ["inputs.channels=[]"], "error: inputs.channels: must be a non-empty list of channels"),
    ("channels-last-not-a-flag", ["channels_last=maybe"], "error: channels_last: must be auto, true or false"),
    ("gradient-clip-negative", ["+trainer.gradient_clip_val=-1"], "error: trainer.gradient_clip_val: must be >= 0"),
    ("base-filters-zero", ["model.net.base_filters=0"],
     "error: model.net: cannot build slidemap.models.UNet: base_filters must be a positive integer (the paper: 32)"),
    ("override-with-a-space", ["data.root=sp ace/sïtes"], "error: data.root=sp ace/sïtes: cannot parse this override"),
    # Hydra's own composition errors, in the same one-line form
    ("unknown-model", ["model=unett"],
     "error: model: unknown option 'unett'; choose one of custom, resunet, smp_resnet, smp_unet, unet (did you mean model=unet?)"),
    ("unknown-key", ["data.batchsize=8"], "error: data.batchsize: unknown key; did you mean data.batch_size?"),
    ("unknown-launcher", ["hydra/launcher=jobli"], "error: hydra/launcher: unknown option 'jobli'"),
    ("bad-override-syntax", ["window=[1,"], "error: window=[1,: cannot parse this override"),
    ("a-list-without-multirun", ["model=unet,resunet"], "error: model=unet,resunet: several values sweep only with -m"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in TRAIN_REFUSED], ids=[c[0] for c in TRAIN_REFUSED])
def test_train_refuses_a_bad_setting_in_one_line(synthetic_root, tmp_path, args, message):
    root = [f"data.root={synthetic_root}"] if args[0].startswith(("optimizer", "+optimizer", "trainer", "+trainer", "model")) \
        else []  # refused once the data is read: the synthetic sites are not written again
    done = hydra_entry("train.py", ["logger=none", "window=32", *root, *args], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert one_line(done.stderr).startswith(message), done.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # no outputs/<date>/<time>, no data generated


def test_a_network_that_is_not_one_logit_per_pixel_is_refused(synthetic_root, tmp_path):
    done = hydra_entry("train.py", ["logger=none", "window=32", f"data.root={synthetic_root}", "model=custom",
                                    "model.net._target_=torch.nn.Conv2d", "+model.net.kernel_size=1",
                                    "+model.net.stride=2"], tmp_path)  # half the size: not one logit per pixel
    assert done.returncode == 2
    assert one_line(done.stderr) == ("error: model.net: torch.nn.Conv2d maps a 1 x 5 x 32 x 32 input to "
                                     "(1, 1, 16, 16); a segmentation network gives one logit per pixel, (1, 1, 32, 32)")


def test_a_setting_lightning_checks_only_in_fit_is_refused_in_one_line(synthetic_root, tmp_path):
    done = hydra_entry("train.py", ["logger=none", "window=32", "scenario=china", f"data.root={synthetic_root}",
                                    "+trainer.val_check_interval=5000"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert one_line(done.stderr).startswith("error: trainer: Lightning refuses the settings: `val_check_interval` "
                                            "(5000) must be less than or equal to the number of the training batches")


def test_a_run_whose_loss_diverges_stops_in_one_line_and_scores_nothing(synthetic_root, tmp_path):
    done = hydra_entry("train.py", ["logger=none", "window=32", "scenario=china", f"data.root={synthetic_root}",
                                    "optimizer.lr=1e6", "trainer.max_epochs=3", f"hydra.run.dir={tmp_path / 'run'}"],
                       tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert one_line(done.stderr).startswith("error: train/loss: training diverged: the training loss is nan in "
                                            "epoch 0")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_only_lightnings_own_setting_checks_become_input_errors():
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from slidemap.training.trainer_errors import raised_by_setting_check

    def raised(err: Exception) -> Exception:
        try:
            raise err
        except Exception as caught:  # noqa: BLE001 -- a real traceback, raised here (in tests/)
            return caught

    assert raised_by_setting_check(raised(MisconfigurationException("no gpu")))
    assert not raised_by_setting_check(raised(ValueError("a bug of slidemap's, raised outside Lightning")))


def test_hydra_full_error_keeps_hydras_own_form(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "model=unett"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**ENV, "HYDRA_FULL_ERROR": "1"})
    assert done.returncode == 1 and "Available options in 'model'" in done.stderr


@pytest.mark.slow
def test_a_run_that_trains_zero_steps_writes_no_result(synthetic_root, tmp_path):
    done = hydra_entry("train.py", [f"data.root={synthetic_root}", "logger=none", "window=32", "scenario=china",
                                    "trainer.max_epochs=1", "trainer.min_epochs=1", "+trainer.limit_train_batches=0",
                                    "model.net.base_filters=8", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert done.returncode == 2 and "trained zero steps" in one_line(done.stderr), done.stderr[-2000:]
    assert not (tmp_path / "run" / "metrics.json").exists()


# ---------------------------------------------------------------- the slidemap command


def test_synth_refuses_a_negative_seed(capsys, tmp_path):
    assert main(["synth", "--out", str(tmp_path / "s"), "--seed", "-1"]) == 2
    assert one_line(capsys.readouterr().err) == ("slidemap synth: error: --seed: must be an integer in "
                                                 "[0, 4294967295], got -1")
    assert not (tmp_path / "s").exists()


def test_site_yaml_refuses_an_unknown_key(capsys, tmp_path):
    site = fs.make_site(tmp_path / "sites" / "a")
    (site / "site.yaml").write_text("bandz: [B2, B3, B4, B8]\n")
    assert main(["describe", str(tmp_path / "sites")]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{site / 'site.yaml'}: unknown key 'bandz' (did you mean 'bands'?)" in line


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "unet.ckpt", window=32)


def test_map_refuses_a_scene_whose_bands_are_all_nodata(capsys, tmp_path, ckpt):
    scene = fs.make_site(tmp_path / "scene", bands=np.zeros((4, *fs.SHAPE), np.uint16), nodata=0)
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(tmp_path / "maps")]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == (f"slidemap map: error: {scene}: nothing to map: no valid pixel in s2.tif band 1 (blue), "
                    "s2.tif band 2 (green), s2.tif band 3 (red), s2.tif band 4 (nir)"), line
    assert not (tmp_path / "maps").exists()


def test_map_names_the_one_empty_band(capsys, tmp_path, ckpt):
    bands = fs.constant_bands(fs.DN)
    bands[3] = 0  # nir all nodata: every pixel invalid, one band to blame
    scene = fs.make_site(tmp_path / "scene", bands=bands, nodata=0)
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(tmp_path / "maps")]) == 2
    assert one_line(capsys.readouterr().err).endswith("nothing to map: no valid pixel in s2.tif band 4 (nir)")


def test_map_refuses_a_one_pixel_scene(capsys, tmp_path, ckpt):
    scene = fs.make_site(tmp_path / "scene")
    for name in ("s2.tif", "dem.tif"):
        with rasterio.open(scene / name) as src:
            profile, data = src.profile, src.read(window=((0, 1), (0, 1)))
        profile.update(width=1, height=1, tiled=False)
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        with rasterio.open(scene / name, "w", **profile) as dst:
            dst.write(data)
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(tmp_path / "maps")]) == 2
    assert one_line(capsys.readouterr().err) == (f"slidemap map: error: {scene}: scene is 1 x 1 px: too small to map "
                                                 "(at least 3 x 3 px, the neighbourhood slope is derived from)")


# ---------------------------------------------------------------- slidemap report: records checked, failures named

def _job(root, name, record):
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / "metrics.json").write_text(record if isinstance(record, str) else json.dumps(record))
    return job


@pytest.mark.parametrize("record, problem", [
    ('{"model": "unet", "window": 64, "sce', "unreadable (JSONDecodeError"),
    ([1, 2], "holds a list, not a run record"),
    ({"model": "unet", "window": "64", "scenario": "china", "areas": {"china": {}}}, "window is '64', not a patch"),
    ("F1-STRING", "areas.china.f1 is 'high', not a fraction in [0, 1] or null"),
    ("F1-ABOVE-1", "areas.china.f1 is 1.5, not a fraction in [0, 1] or null"),
    ("NO-AREAS", "has no test results (areas)"),
    ("ZERO-EPOCHS", "trained zero epochs (trainer.max_epochs=0): the scores of an untrained network"),
], ids=["truncated", "a-list", "window-a-string", "f1-a-string", "f1-above-one", "no-areas", "zero-epochs"])
def test_report_names_the_file_and_what_is_wrong(capsys, tmp_path, record, problem):
    if isinstance(record, str) and record.isupper():
        good = metrics_record("unet", 64, "china", 0, {"china": 0.5})
        if record == "NO-AREAS":
            good["areas"] = {}
        elif record == "ZERO-EPOCHS":
            good.update(epochs=0, stopped_by="max_epochs")
        else:
            good["areas"]["china"]["f1"] = "high" if record == "F1-STRING" else 1.5
        record = good
    job = _job(tmp_path / "sweep", "unet-64-china", record)
    assert main(["report", str(tmp_path / "sweep")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "no complete run" in line and f"{job / 'metrics.json'}: {problem}" in line, line


def test_report_leaves_a_bad_record_out_and_lists_it(tmp_path):
    from slidemap.reporting.sweep import scan_sweep

    good = metrics_record("unet", 64, "china", 0, {"china": 0.5, "japan": 0.4})
    bad = metrics_record("unet", 64, "china", 1, {"china": 0.5})
    bad["areas"]["china"]["precision"] = "0.7"
    _job(tmp_path, "a", good), _job(tmp_path, "b", bad)
    sweep = scan_sweep(tmp_path, progress=False)
    assert [r["seed"] for r in sweep.runs] == [0]
    assert any("areas.china.precision is '0.7'" in why for _, why in sweep.missing())


def test_an_undefined_metric_is_na_and_left_out_of_means(tmp_path):
    """F1 on an area without any reference landslide is undefined: null in the record, n/a in the report's
    tables, out of the cell's mean (which is then the mean of the runs that define it)."""
    from slidemap.reporting.tables import cell_stats, format_interval

    runs = [metrics_record("unet", 64, "china", s, {"china": f1, "japan": 0.4}) for s, f1 in enumerate((0.6, 0.8))]
    runs.append(metrics_record("unet", 64, "china", 2, {"china": 0.5, "japan": 0.4}))
    runs[2]["areas"]["china"].update(recall=None, f1=None, iou=None)
    stats = cell_stats(runs)
    assert stats["china"]["f1"].n == 2 and stats["china"]["f1"].mean == pytest.approx(0.7)
    assert stats["china"]["precision"].n == 3
    none = [metrics_record("unet", 64, "china", 0, {"china": 0.5})]
    none[0]["areas"]["china"]["f1"] = None
    assert format_interval(cell_stats(none)["china"]["f1"]) == "n/a"


# ---------------------------------------------------------------- ensembles and reports that cannot mix

def test_an_ensemble_refuses_one_model_twice(capsys, tmp_path, ckpt):
    import shutil

    scene = fs.make_site(tmp_path / "scene")
    copy = shutil.copy(ckpt, tmp_path / "copy.ckpt")
    for second, same in ((ckpt, "the same file"), (copy, "the same weights")):
        assert main(["map", "--ckpt", str(ckpt), str(second), "--scene", str(scene), "--out",
                     str(tmp_path / "maps")]) == 2
        line = one_line(capsys.readouterr().err)
        assert line == f"slidemap map: error: {second}: is {same} as {ckpt}: an ensemble needs distinct members " \
                       "(each seed once)", line
    assert not (tmp_path / "maps").exists()


def test_an_ensemble_without_one_threshold_needs_one_given(tmp_path):
    from dataclasses import replace

    from slidemap.errors import InputError
    from slidemap.mapping.checkpoint import load_checkpoint
    from slidemap.mapping.ensemble import Ensemble

    a = load_checkpoint(save_checkpoint(tmp_path / "a.ckpt"))
    b = replace(load_checkpoint(save_checkpoint(tmp_path / "b.ckpt")), threshold=0.3)
    with pytest.raises(InputError, match=r"members differ in threshold \(0.3, 0.5\): give the map's threshold"):
        Ensemble([a, b]).threshold
    assert Ensemble([a, replace(b, threshold=0.5)]).threshold == 0.5


def test_report_refuses_a_cell_whose_seeds_differ_in_a_setting(capsys, tmp_path):
    for seed, lr in ((0, "0.001"), (1, "0.0003")):
        record = metrics_record("unet", 64, "china", seed, {"china": 0.5},
                                overrides=["model=unet", "scenario=china", f"seed={seed}", f"optimizer.lr={lr}"])
        _job(tmp_path / "sweep", f"run{seed}", record)
    assert main(["report", str(tmp_path / "sweep")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "run1: a seed of cell model=unet window=64 scenario=china with other settings than" in line
    assert "they differ in optimizer.lr=0.0003, optimizer.lr=0.001" in line, line


def test_report_pools_seeds_that_differ_only_in_seed_and_spelled_axes(tmp_path):
    from slidemap.reporting.sweep import scan_sweep

    _job(tmp_path, "a", metrics_record("unet", 64, "china", 0, {"china": 0.5}, overrides=["scenario=china", "seed=0"]))
    _job(tmp_path, "b", metrics_record("unet", 64, "china", 1, {"china": 0.6},
                                       overrides=["scenario=china", "seed=1", "window=64", "model=unet"]))
    assert [r["seed"] for r in scan_sweep(tmp_path, progress=False).runs] == [0, 1]


def test_report_does_not_take_an_eval_result_for_a_training_run(tmp_path):
    from slidemap.reporting.sweep import scan_sweep

    _job(tmp_path, "train", metrics_record("unet", 64, "china", 0, {"china": 0.5}, best_checkpoint="x/best.ckpt"))
    _job(tmp_path, "eval", metrics_record("unet", 64, "china", 0, {"china": 0.7}, checkpoint="x/best.ckpt"))
    sweep = scan_sweep(tmp_path, progress=False)
    assert [r["areas"]["china"]["f1"] for r in sweep.runs] == [0.5]
    assert any(why.startswith("not a training run:") for _, why in sweep.missing())


# ---------------------------------------------------------------- more from the independent probe

def test_a_read_only_run_folder_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    immutable = os.access(ro, os.W_OK) and subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode == 0
    try:
        if os.access(ro, os.W_OK) and not immutable:
            pytest.skip("root writes into read-only folders and chattr is not available")
        done = hydra_entry("train.py", ["logger=none", f"hydra.run.dir={ro}/run"], tmp_path)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)], check=True)
        ro.chmod(0o700)
    assert done.returncode == 2
    assert one_line(done.stderr).startswith(f"error: {ro}/run: cannot write the run's folder there: "), done.stderr


def test_a_test_area_without_valid_pixels_is_refused_before_training(tmp_path):
    import patch_fixtures as px

    root = px.write_dataset(tmp_path / "nan", "tif")
    for image in (root / "test" / "images").iterdir():
        with rasterio.open(image, "r+") as dst:
            dst.write(np.full((dst.count, dst.height, dst.width), np.nan, dst.dtypes[0]))
    done = hydra_entry("train.py", ["logger=none", "data=patches", f"data.root={root}", "inputs=rgbn", "window=32",
                                    f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert done.returncode == 2 and "no valid" in one_line(done.stderr), done.stderr[-2000:]
    assert not (tmp_path / "run").exists()  # refused before training: no checkpoints left behind


def test_an_8_bit_s2_is_no_reflectance(capsys, tmp_path, ckpt):
    scene = fs.make_site(tmp_path / "scene", bands=fs.constant_bands((50, 60, 70, 200), dtype=np.uint8))
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(tmp_path / "maps")]) == 2
    assert "8-bit values are no reflectance" in one_line(capsys.readouterr().err)


def test_product_options_are_refused_with_a_scene(capsys, tmp_path, ckpt):
    scene = fs.make_site(tmp_path / "scene")
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--bounds", "1", "2", "3", "4", "--out",
                 str(tmp_path / "maps")]) == 2
    assert one_line(capsys.readouterr().err).startswith("slidemap map: error: --bounds: goes with --s2 PRODUCT")


def test_an_output_below_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    assert main(["synth", "--out", str(tmp_path / "afile" / "sub")]) == 2
    assert one_line(capsys.readouterr().err) == (f"slidemap synth: error: {tmp_path / 'afile'}: is a file, not a "
                                                 f"folder: {tmp_path / 'afile' / 'sub'} cannot be made below it")


def test_report_refuses_runs_on_other_data(capsys, tmp_path):
    _job(tmp_path / "sweep", "a", metrics_record("unet", 64, "china", 0, {"china": 0.5}, overrides=["scenario=china"]))
    _job(tmp_path / "sweep", "b", metrics_record("unet", 64, "all", 0, {"p": 0.5},
                                                 overrides=["data=patches", "data.root=/x"]))
    assert main(["report", str(tmp_path / "sweep")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "was trained on other data than" in line and "data.root=/x, data=patches" in line, line


# ---------------------------------------------------------------- from the second independent probe

def test_eval_flags_are_flags(tmp_path):
    for key in ("calibrated", "check_normaliser"):
        done = hydra_entry("eval.py", ["ckpt_path=x.ckpt", f"{key}=no"], tmp_path)
        assert done.returncode == 2 and one_line(done.stderr) == f"error: {key}: must be true or false, got 'no'"


def test_a_synthetic_model_without_a_card_is_still_refused(capsys, tmp_path):
    """An interrupted run's checkpoints have no card; they record the data kind from their first save."""
    path = save_checkpoint(tmp_path / "last.ckpt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["data_info"]["data_kind"] = "synthetic"
    torch.save(state, path)
    scene = fs.make_site(tmp_path / "scene")
    assert main(["map", "--ckpt", str(path), "--scene", str(scene), "--out", str(tmp_path / "maps")]) == 2
    assert "was trained only on the built-in synthetic sites" in one_line(capsys.readouterr().err)
    assert main(["card", str(path)]) == 0
    assert "It records that it was trained on synthetic data." in capsys.readouterr().out


def test_dataset_force_goes_with_write(capsys, tmp_path):
    assert main(["dataset", str(tmp_path), "--force"]) == 2
    assert one_line(capsys.readouterr().err) == ("slidemap dataset: error: --force: goes with --write (it replaces a "
                                                 "different dataset.yaml)")


def test_an_output_that_cannot_be_written_is_one_line(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    fs.make_site(tmp_path / "sites" / "a")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "slidemap.cli", "describe", str(tmp_path / "sites")],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, env=ENV)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert one_line(done.stderr) == "slidemap describe: error: the output: No space left on device"


# ---------------------------------------------------------------- from the third independent probe

def test_a_new_top_level_key_is_refused(tmp_path):
    for args, message in ((["lossy=bogus"], "error: lossy: unknown key: no such setting (conf/train.yaml lists them)"),
                          (["+lossy=bogus"], "error: lossy: is no setting train.py reads")):
        done = hydra_entry("train.py", ["logger=none", *args], tmp_path)
        assert done.returncode == 2 and one_line(done.stderr).startswith(message), done.stderr[-1000:]
    assert list(tmp_path.iterdir()) == []


def test_an_ensemble_refuses_an_unfinished_run_and_a_seed_twice(tmp_path):
    from dataclasses import replace

    from slidemap.errors import InputError
    from slidemap.mapping.checkpoint import load_checkpoint
    from slidemap.mapping.ensemble import Ensemble

    a = load_checkpoint(save_checkpoint(tmp_path / "a.ckpt"))
    b = load_checkpoint(save_checkpoint(tmp_path / "b.ckpt"))
    with pytest.raises(InputError, match="a run that did not finish"):
        Ensemble([a, replace(b, data_kind="sites")])
    card = {"name": "unet-64-china-post seed 0"}
    with pytest.raises(InputError, match="is unet-64-china-post seed 0 again"):
        Ensemble([replace(a, card=card), replace(b, card=card)])


def test_eval_refuses_an_overlap_for_the_grid(tmp_path):
    done = hydra_entry("eval.py", ["ckpt_path=x.ckpt", "inference=grid", "overlap=0.3"], tmp_path)
    assert done.returncode == 2
    assert one_line(done.stderr) == "error: overlap: goes with inference=blend (the paper's grid does not overlap)"
