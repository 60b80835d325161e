"""The LightningModule (loss, metrics per area) and real training runs through train.py and Hydra."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slidemap.models import UNet
from slidemap.training.module import LandslideModule, masked_bce

from conftest import TINY_TRAINING, TINY_UNET, compose_config, constant_keys_unnamed, run_training

REPO = Path(__file__).resolve().parents[1]
AREA_KEYS = {"precision", "recall", "f1", "iou", "tp", "fp", "fn", "tn"}


# ---------------------------------------------------------------- loss


def test_masked_bce_ignores_invalid_pixels():
    # Valid pixels: logit 0 with target 1 -> -log(0.5) = log 2; logit 0 with target 0 -> log 2.
    # The invalid pixel (logit 10, target 0: loss ~10) must not count.
    logits = torch.tensor([[[0.0, 0.0, 10.0]]])
    target = torch.tensor([[[1.0, 0.0, 0.0]]])
    valid = torch.tensor([[[True, True, False]]])
    assert masked_bce(logits, target, valid).item() == pytest.approx(math.log(2))


def test_masked_bce_positive_weight_and_weight_map():
    logits = torch.zeros(1, 1, 2)
    target = torch.tensor([[[1.0, 0.0]]])
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    # pos_weight 3: (3 log 2 + log 2) / 2 = 2 log 2
    assert masked_bce(logits, target, valid, pos_weight=3.0).item() == pytest.approx(2 * math.log(2))
    # weight map (1, 0): only the first pixel counts -> log 2
    weight = torch.tensor([[[1.0, 0.0]]])
    assert masked_bce(logits, target, valid, weight=weight).item() == pytest.approx(math.log(2))


# ---------------------------------------------------------------- metrics per area on a fixed prediction


class FixedLogits(nn.Module):
    """Returns logits stored in channel 0 of the input: the test decides the prediction exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + 0 * self.dummy


def _area(pred: list[list[int]], truth: list[list[int]], valid: list[list[int]]) -> TensorDataset:
    logits = torch.tensor(pred, dtype=torch.float32)[None, None] * 20 - 10  # 1 -> +10, 0 -> -10
    return TensorDataset(logits, torch.tensor(truth, dtype=torch.float32)[None],
                         torch.tensor(valid, dtype=torch.bool)[None])


def test_test_metrics_per_area_and_pooled_all():
    # Area a: pred/truth on 2x3, last column invalid. Valid pixels: pred 1 1 0 0, truth 1 0 1 0
    #   -> TP 1, FP 1, FN 1: P = R = F1 = 0.5, IoU = 1/3.
    a = _area([[1, 1, 1], [0, 0, 1]], [[1, 0, 0], [1, 0, 0]], [[1, 1, 0], [1, 1, 0]])
    # Area b: pred 1 1 1 1, truth 1 1 1 0 -> TP 3, FP 1, FN 0: P 0.75, R 1, F1 6/7, IoU 0.75.
    b = _area([[1, 1], [1, 1]], [[1, 1], [1, 0]], [[1, 1], [1, 1]])
    module = LandslideModule(FixedLogits(), test_areas=["a", "b"])
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.test(module, dataloaders=[DataLoader(a), DataLoader(b)], verbose=False)
    res = module.test_results
    assert (res["a"]["tp"], res["a"]["fp"], res["a"]["fn"], res["a"]["tn"]) == (1, 1, 1, 1)
    assert res["a"]["f1"] == pytest.approx(0.5) and res["a"]["iou"] == pytest.approx(1 / 3)
    assert (res["b"]["tp"], res["b"]["fp"], res["b"]["fn"]) == (3, 1, 0)
    assert res["b"]["precision"] == pytest.approx(0.75) and res["b"]["f1"] == pytest.approx(6 / 7)
    # "all" pools counts: TP 4, FP 2, FN 1 -> P 2/3, R 4/5, F1 8/11 (not the mean of 0.5 and 6/7)
    assert (res["all"]["tp"], res["all"]["fp"], res["all"]["fn"], res["all"]["tn"]) == (4, 2, 1, 1)
    assert res["all"]["f1"] == pytest.approx(8 / 11)


def test_loss_decreases_on_a_tiny_site():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5, 32, 32)).astype(np.float32)
    y = (x[:, 3] - x[:, 2] > 0.8).astype(np.float32)  # a learnable pixel rule
    valid = np.ones_like(y, dtype=bool)
    data = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(valid)), batch_size=4)
    torch.manual_seed(0)
    module = LandslideModule(UNet(in_channels=5, base_filters=8), optimizer=partial(torch.optim.Adam, lr=1e-3))
    before = float(np.mean([module._loss(b)[0].item() for b in data]))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=15, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=data)
    after = float(np.mean([module._loss(b)[0].item() for b in data]))
    assert after < 0.7 * before


def test_optimiser_is_the_papers_adam(cfg_train):
    cfg = cfg_train()
    module = instantiate(cfg.module, _partial_=True)(net=UNet(in_channels=5, base_filters=8),
                                                     optimizer=instantiate(cfg.optimizer))
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 1e-3 and tuple(opt.defaults["betas"]) == (0.9, 0.999)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in module.parameters())


def test_an_optimiser_from_the_config_line(cfg_train):
    cfg = cfg_train("optimizer._target_=torch.optim.SGD", "~optimizer.betas", "~optimizer.fused", "optimizer.lr=0.05")
    opt = instantiate(cfg.module, _partial_=True)(net=UNet(in_channels=5, base_filters=8),
                                                  optimizer=instantiate(cfg.optimizer)).configure_optimizers()
    assert type(opt) is torch.optim.SGD and opt.defaults["lr"] == 0.05


def test_a_module_without_optimiser_says_so():
    with pytest.raises(ValueError, match="needs an optimizer"):
        LandslideModule(UNet(in_channels=5, base_filters=8)).configure_optimizers()


# ---------------------------------------------------------------- train.py end to end


def train(args: list[str], tmp_path: Path, timeout: int = 600,
          name_constants: bool = False) -> subprocess.CompletedProcess:
    """train.py as a user runs it. Sweep folders are named by the swept keys only, unless ``name_constants``
    (then every override outside the named axes is in the name, as for users: see test_run_identity.py)."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    names = [] if name_constants or "-m" not in args else [constant_keys_unnamed(args)]
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args, *names], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def kill_when(args: list[str], path: Path, tmp_path: Path, timeout: float = 300) -> None:
    """Start train.py with ``args`` and SIGKILL its whole process group as soon as ``path`` exists."""
    import signal
    import time

    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def tiny(synthetic_root: Path, *extra: str) -> list[str]:
    return [f"data.root={synthetic_root}", "trainer.max_epochs=2", "trainer.min_epochs=1",
            "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2", "trainer.enable_progress_bar=false",
            *extra]


@pytest.mark.slow
def test_single_run_writes_every_artefact(synthetic_root, tmp_path):
    out = tmp_path / "run"
    done = train(tiny(synthetic_root, "logger=csv", "model.net.base_filters=8", f"hydra.run.dir={out}"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["model"], metrics["window"], metrics["scenario"], metrics["seed"]) == ("unet", 64, "all", 0)
    assert metrics["epochs"] >= 1 and metrics["wall_time_s"] > 0
    assert set(metrics["areas"]) == {"taiwan", "china", "japan", "all"}
    for area in metrics["areas"].values():
        assert AREA_KEYS <= set(area)
    pooled = {k: sum(metrics["areas"][a][k] for a in ("taiwan", "china", "japan")) for k in ("tp", "fp", "fn")}
    assert pooled == {k: metrics["areas"]["all"][k] for k in pooled}
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert (out / ".hydra" / "config.yaml").is_file()
    import rasterio

    from slidemap.data.tiling.split import split_sites
    from slidemap.data.sites.reader import read_site

    site = read_site(synthetic_root / "japan")
    test = split_sites({"japan": site})["japan"].test
    with rasterio.open(out / "predictions" / "japan_binary.tif") as src:
        assert src.crs == site.crs and (src.height, src.width) == (test.rows, test.cols)
        assert src.transform.c == pytest.approx(site.transform.c + test.col0 * site.transform.a)
        binary = src.read(1)
    label, valid = site.label[test.slices] == 1, site.valid[test.slices]
    counts = {"tp": int(((binary == 1) & label & valid).sum()), "fp": int(((binary == 1) & ~label & valid).sum()),
              "fn": int(((binary == 0) & label & valid).sum())}
    assert counts == {k: metrics["areas"]["japan"][k] for k in counts}  # the written map is the scored map


@pytest.mark.slow
def test_same_seed_same_metrics(synthetic_root, tmp_path):
    results = []
    for i in range(2):
        cfg = compose_config("train", tmp_path / f"run{i}", [f"data.root={synthetic_root}", *TINY_TRAINING, TINY_UNET,
                                                             "+trainer.limit_test_batches=3", "scenario=china"])
        results.append(json.loads((run_training(cfg) / "metrics.json").read_text())["areas"])
    assert results[0] == results[1] and results[0]["china"]["tp"] + results[0]["china"]["fn"] > 0


@pytest.mark.slow
def test_small_sweep_gives_each_job_its_metrics_and_wandb_run(synthetic_root, tmp_path):
    sweep = tmp_path / "sweep"
    done = train(["-m", "model=unet,resunet", "window=32", "scenario=taiwan,china", f"hydra.sweep.dir={sweep}",
                  *tiny(synthetic_root, "trainer.max_epochs=1", "+trainer.limit_test_batches=2")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["resunet-32-china", "resunet-32-taiwan", "unet-32-china", "unet-32-taiwan"]
    run_ids = set()
    for job in jobs:
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        model, window, scenario = job.split("-")
        assert (metrics["model"], metrics["window"], metrics["scenario"]) == (model, int(window), scenario)
        offline = list((sweep / job / "wandb").glob("offline-run-*"))
        assert len(offline) == 1, f"{job}: expected its own W&B offline run, got {offline}"
        run_ids.add(offline[0].name.rsplit("-", 1)[-1])
    assert len(run_ids) == 4


@pytest.mark.slow
def test_a_sweep_over_input_sets_runs_each_set_and_the_report_compares_them(synthetic_root, tmp_path):
    """Issue 8: one sweep over inputs=post,prepost,change on the synthetic sites (which have s2_pre.tif)."""
    from slidemap.reporting.report import write_report

    sweep = tmp_path / "sweep"
    done = train(["-m", "inputs=post,prepost,change", "window=32", "scenario=china", "logger=csv",
                  "model.net.base_filters=8", f"hydra.sweep.dir={sweep}",
                  *tiny(synthetic_root, "trainer.max_epochs=1", "+trainer.limit_test_batches=2")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = {"unet-32-china": ("post", 5), "unet-32-china-prepost": ("prepost", 9),
                "unet-32-china-change": ("change", 7)}
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == sorted(expected)
    for job, (inputs, channels) in expected.items():
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["inputs"] == inputs and len(metrics["channels"]) == channels
        ckpt = torch.load(sweep / job / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
        first_conv = next(v for k, v in ckpt["state_dict"].items() if v.ndim == 4)
        assert first_conv.shape[1] == channels  # the network takes the input set's channels
    report = write_report(sweep)
    rows = list(csv.DictReader((report.parent / "input_sets.csv").open()))
    assert {r["inputs"] for r in rows if r["kind"] == "model"} == {"post", "prepost", "change"}
    assert {r["name"] for r in rows if r["kind"] == "rule"} == {"rule baseline (NDVI)", "rule baseline (rdNDVI)"}


@pytest.mark.parametrize("override, expected", [
    ("model=vgg", "error: model: unknown option 'vgg'; choose one of custom, resunet, smp_resnet, smp_unet, unet"),
    ("scenario=mars", "error: scenario: unknown option 'mars'; choose one of all, china, japan, taiwan"),
    ("window=48", "error: window: unsupported window 48; choose one of 32, 64, 128"),
])
def test_unknown_choices_fail_with_the_list(synthetic_root, tmp_path, override, expected):
    done = train([f"data.root={synthetic_root}", "logger=none", override], tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(expected), done.stderr[-2000:]


def test_window_larger_than_a_test_area_fails_before_training(tmp_path):
    from fake_sites import make_site

    make_site(tmp_path / "sites" / "tiny")  # 16 x 20 px: its test area is far smaller than 32 px
    done = train(["data=scenes", f"data.root={tmp_path / 'sites'}", "logger=none", "window=32",
                  f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, timeout=120)
    assert done.returncode == 2
    assert "window 32 px is larger than the test area of site 'tiny'" in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_rerun_skips_a_finished_run_and_resumes_an_interrupted_one(synthetic_root, tmp_path):
    out = tmp_path / "run"
    args = [f"data.root={synthetic_root}", "logger=none", "model.net.base_filters=8", "scenario=china",
            "trainer.max_epochs=4", "trainer.min_epochs=4", "+trainer.limit_train_batches=30",
            "+trainer.limit_val_batches=2", "trainer.enable_progress_bar=false", f"hydra.run.dir={out}"]
    last = out / "checkpoints" / "last.ckpt"
    kill_when(args, last, tmp_path)  # interrupted after its first epoch checkpoint
    assert last.exists() and not (out / "metrics.json").exists(), "not interrupted between checkpoint and results"
    resumed = train(args, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(last) and metrics["epochs"] == 4
    assert not last.exists()  # the resume state goes once the run is complete
    first = (out / "metrics.json").stat().st_mtime_ns
    again = train(args, tmp_path)
    assert again.returncode == 0 and "is complete" in again.stdout + again.stderr
    assert (out / "metrics.json").stat().st_mtime_ns == first  # not re-run
    other = train([*args, "seed=3"], tmp_path)  # another run into the same folder: refused, nothing touched
    assert other.returncode == 2 and "holds another run" in other.stderr
    assert (out / "metrics.json").stat().st_mtime_ns == first


@pytest.mark.slow
def test_a_killed_sweep_completes_when_run_again(synthetic_root, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "scenario=china,japan", "model.net.base_filters=8", f"hydra.sweep.dir={sweep}",
            *tiny(synthetic_root, "logger=none")]
    first = sweep / "unet-64-china" / "metrics.json"
    kill_when([*args, constant_keys_unnamed(args)], first, tmp_path)
    assert first.exists(), "the first job never finished"
    stamp = first.stat().st_mtime_ns
    done = train(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for job in ("unet-64-china", "unet-64-japan"):
        assert json.loads((sweep / job / "metrics.json").read_text())["areas"]
    assert first.stat().st_mtime_ns == stamp  # the finished job was skipped, not repeated
    assert not list(sweep.rglob("*.tmp*")), "a half-written file was left behind"


def test_channels_last_follows_the_precision():
    from slidemap.training.run import use_channels_last

    assert use_channels_last("auto", "bf16-mixed") and not use_channels_last("auto", "32-true")
    assert use_channels_last(True, "32-true") and not use_channels_last(False, "bf16-mixed")


@pytest.mark.parametrize("model, window, expected", [("smp_unet", 32, "32-true"), ("smp_unet", 64, "32-true"),
                                                     ("smp_unet", 128, "auto"), ("unet", 32, "auto")])
def test_auto_precision_follows_the_models_measurements(model, window, expected):
    from hydra import compose, initialize_config_dir

    from slidemap.training.run import resolve_precision, run_precision

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=[f"model={model}", f"window={window}"])
    assert run_precision(cfg) == (resolve_precision("auto", "cpu") if expected == "auto" else expected)
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=[f"model={model}", f"window={window}", "trainer.precision=bf16-mixed"])
    assert run_precision(cfg) == "bf16-mixed"  # an explicit setting always wins
