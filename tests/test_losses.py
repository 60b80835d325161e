"""The ``loss`` group: each config builds its loss, the values match hand computations, and no unlabelled or nodata
pixel ever changes a loss or its gradient."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import REPO, compose_config
from omegaconf import OmegaConf

from slidemap.training.losses import MaskedBCE, WeightedLoss, build_loss

LOSSES = sorted(p.stem for p in (REPO / "conf" / "loss").glob("*.yaml"))


def loss_of(name: str, tmp_path, *overrides: str) -> WeightedLoss:
    cfg = compose_config("train", tmp_path, ["data.root=sites", f"loss={name}", *overrides])
    return build_loss(OmegaConf.to_container(cfg.loss, resolve=True), cfg.module.pos_weight)


def test_the_group_holds_the_issues_losses():
    assert LOSSES == ["bce", "bce_dice", "dice", "focal", "lovasz", "tversky"]


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


# 2 x 2 image: logits, labels; the last pixel is unlabelled (valid False) and labelled "wrong" on purpose
LOGITS = torch.tensor([[[2.0, -1.0], [0.5, 9.0]]])
TARGET = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
VALID = torch.tensor([[[True, True], [True, False]]])


def test_hand_computed_values_on_the_labelled_pixels(tmp_path):
    p = [sigmoid(2.0), sigmoid(-1.0), sigmoid(0.5)]
    y = [1.0, 0.0, 1.0]
    bce = -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for q, t in zip(p, y)) / 3
    inter, total = sum(q * t for q, t in zip(p, y)), sum(p) + sum(y)
    dice = 1 - 2 * inter / total
    focal = sum(-(1 - (q if t else 1 - q)) ** 2 * math.log(q if t else 1 - q) for q, t in zip(p, y)) / 3
    fp, fn = sum(q * (1 - t) for q, t in zip(p, y)), sum((1 - q) * t for q, t in zip(p, y))
    tversky = 1 - inter / (inter + 0.3 * fp + 0.7 * fn)
    expected = {"bce": bce, "dice": dice, "focal": focal, "tversky": tversky, "bce_dice": bce + dice}
    for name, value in expected.items():
        got = loss_of(name, tmp_path)(LOGITS, TARGET, VALID).item()
        assert got == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_lovasz_hinge_by_hand(tmp_path):
    """Valid pixels: z=2 (landslide, hinge error 1 - 2 = -1), z=-1 and z=0.5 (background, errors 0 and 1.5); the
    4th (z=9, background) is unlabelled. Errors sorted 1.5, 0, -1 with labels 0, 0, 1: the Jaccard loss of the
    prefixes is 0.5, 0.5, 0 (a false positive, then two), so its gradient is (0.5, 0, ...) and the loss
    relu(1.5) * 0.5 = 0.75."""
    loss = loss_of("lovasz", tmp_path)
    logits = torch.tensor([[[2.0, -1.0], [0.5, 9.0]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    assert loss(logits, target, VALID).item() == pytest.approx(0.75)


@pytest.mark.parametrize("name", LOSSES)
def test_unlabelled_pixels_change_neither_loss_nor_gradient(name, tmp_path):
    loss = loss_of(name, tmp_path)
    torch.manual_seed(0)
    logits = torch.randn(2, 8, 8)
    target = (torch.rand(2, 8, 8) > 0.7).float()
    valid = torch.rand(2, 8, 8) > 0.3
    values, grads = [], []
    for fill in (0.0, 1.0):  # what lies under an unlabelled pixel: anything
        z = torch.where(valid, logits, torch.full_like(logits, 5.0 + fill)).requires_grad_(True)
        y = torch.where(valid, target, torch.full_like(target, fill))
        out = loss(z, y, valid)
        out.backward()
        values.append(out.item())
        grads.append(z.grad.clone())
        assert torch.all(z.grad[~valid] == 0), name
    assert values[0] == pytest.approx(values[1], abs=1e-6) and torch.allclose(grads[0], grads[1], atol=1e-7)


def test_pos_weight_reaches_the_papers_bce(tmp_path):
    """module.pos_weight=3 weights the two landslide pixels: log 2 each at logit 0, 3 log 2 weighted, over 4 pixels."""
    loss = loss_of("bce", tmp_path, "module.pos_weight=3")
    z, y = torch.zeros(1, 2, 2), torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert loss(z, y, torch.ones(1, 2, 2, dtype=torch.bool)).item() == pytest.approx(2 * math.log(2))


def test_a_term_that_would_see_ignored_pixels_is_refused():
    from segmentation_models_pytorch.losses import DiceLoss

    with pytest.raises(ValueError, match=r"terms\[0\]: DiceLoss has ignore_index=None; it must be -1"):
        WeightedLoss([(1.0, DiceLoss("binary"))])
    with pytest.raises(ValueError, match=r"terms\[0\]: cannot build it"):
        build_loss({"terms": [{"weight": 1, "fn": {"_target_": "segmentation_models_pytorch.losses.NoSuchLoss"}}]})


@pytest.mark.parametrize("name, override, message", [
    ("focal", "loss.terms.0.fn.alpha=2", r"terms\[0\].fn.alpha: the landslide class's weight in the focal loss lies "
                                         r"in \[0, 1\], got 2"),
    ("focal", "loss.terms.0.fn.gamma=-1", r"terms\[0\].fn.gamma: must be a finite number >= 0, got -1"),
    ("tversky", "loss.terms.0.fn.alpha=-1", r"terms\[0\].fn.alpha: must be a finite number >= 0, got -1"),
    ("bce_dice", "loss.terms.1.weight=-1", r"terms\[1\].weight: must be a finite number >= 0, got -1"),
    ("dice", "loss.terms.0.weight=0", r"every term's weight is 0"),
    ("dice", "loss.terms.0.fn.mode=multiclass", r"terms\[0\].fn.mode: DiceLoss must run in mode binary"),
    ("dice", "loss.terms.0.fn.from_logits=false", r"terms\[0\].fn.from_logits: must be true"),
])
def test_settings_that_would_optimise_something_else_are_refused(name, override, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        loss_of(name, tmp_path, override)


@pytest.mark.parametrize("name", LOSSES)
def test_a_batch_without_a_labelled_pixel_gives_zero_not_nan(name, tmp_path):
    z = torch.randn(2, 4, 4, requires_grad=True)
    value = loss_of(name, tmp_path)(z, torch.ones(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool))
    value.backward()
    assert value.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))


def test_a_torch_loss_gets_the_valid_pixels_only():
    loss = WeightedLoss([(2.0, torch.nn.BCEWithLogitsLoss()), (1.0, MaskedBCE())])
    z, y = torch.zeros(1, 2, 2), torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    valid = torch.tensor([[[True, True], [False, False]]])
    assert loss(z, y, valid).item() == pytest.approx(3 * math.log(2))


@pytest.mark.slow
def test_a_loss_sweep_keeps_every_job_and_the_report_compares_them(synthetic_root, tmp_path):
    """Issue 26's done-when: loss=bce,dice,focal,lovasz,tversky,bce_dice seed=0,1 gives 12 jobs, each its own folder
    and cell, and the report's summary has each loss's cell with an interval over its two seeds."""
    import csv
    import json

    from test_training import tiny, train

    from slidemap.reporting.report import write_report

    sweep = tmp_path / "sweep"
    done = train(["-m", f"loss={','.join(LOSSES)}", "seed=0,1", "window=32", "scenario=china",
                  "model.net.base_filters=8", f"hydra.sweep.dir={sweep}",
                  *tiny(synthetic_root, "trainer.max_epochs=1", "+trainer.limit_test_batches=2")], tmp_path,
                 timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    suffix = {n: "" if n == "bce" else f"-{n}" for n in LOSSES}
    assert jobs == sorted(f"unet-32-china{suffix[n]}-seed={s}" for n in LOSSES for s in (0, 1))
    for n in LOSSES:
        record = json.loads((sweep / f"unet-32-china{suffix[n]}-seed=1" / "metrics.json").read_text())
        assert record["loss"] == n and record["cell"] == f"unet-32-china-post{suffix[n]}"
    report = write_report(sweep)
    rows = [r for r in csv.DictReader((report.parent / "summary.csv").open()) if r["area"] == "china"]
    assert sorted(r["inputs"] for r in rows) == sorted("post" if n == "bce" else f"post:{n}" for n in LOSSES)
    assert all(r["n"] == "2" and r["f1_ci_low"] != "" for r in rows)
    assert "post:dice" in report.read_text()
