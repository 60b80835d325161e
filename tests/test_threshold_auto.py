"""``threshold=auto``: the F1-optimal threshold of the calibrated validation probabilities, fitted after training,
kept in the checkpoint and used by the test scores, the run's maps, eval.py and ``slidemap map`` unless a threshold
is given; the paper's runs keep 0.5."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from checkpoints import save_checkpoint
from conftest import run_training

from slidemap.errors import InputError
from slidemap.evaluation.histogram import best_threshold, histogram
from slidemap.mapping.checkpoint import chosen_threshold, load_checkpoint


@pytest.mark.slow
def test_auto_fits_the_threshold_and_every_consumer_uses_it(cfg_train):
    out = run_training(cfg_train("threshold=auto", "scenario=china", "window=32"))
    record = json.loads((out / "metrics.json").read_text())
    t = record["threshold"]
    assert record["threshold_fit"]["method"] == "f1_optimal" and 0 < t < 1 and t != 0.5
    ckpt = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["threshold"] == t and ckpt["hyper_parameters"]["threshold_fit"]["val_f1"] > 0
    model = load_checkpoint(record["best_checkpoint"])
    assert model.threshold == t  # eval.py, slidemap map and slidemap region take it when none is given
    assert chosen_threshold(model, None) == t and chosen_threshold(model, 0.3) == 0.3
    with rasterio.open(out / "predictions" / "china_binary.tif") as src:  # the run's own map
        assert src.descriptions[0] == f"landslide (probability > {t:g})"
        binary = src.read(1)
    with rasterio.open(out / "predictions" / "china_probability.tif") as src:
        prob = src.read(1)
    ok = np.isfinite(prob)
    assert np.array_equal(binary[ok] == 1, prob[ok] > np.float32(t))


def test_the_threshold_is_the_f1_optimum_of_the_validation_probabilities(cfg_train, monkeypatch):
    """The fitted value, recomputed here from the validation logits and the temperature, by brute force over
    every bin edge."""
    from slidemap.training import calibrate as calibration

    seen = {}
    original = calibration.fit_threshold

    def spy(module, logits, labels, temperature):
        seen.update(logits=logits, labels=labels, temperature=temperature)
        return original(module, logits, labels, temperature)

    monkeypatch.setattr(calibration, "fit_threshold", spy)
    out = run_training(cfg_train("threshold=auto", "scenario=china", "window=32", "+trainer.limit_test_batches=1"))
    t = json.loads((out / "metrics.json").read_text())["threshold"]
    p = torch.sigmoid(torch.from_numpy(seen["logits"] / seen["temperature"])).float().numpy()
    y = seen["labels"] > 0
    grid = np.linspace(0, 1, 10_001, dtype=np.float32)[1:-1]
    f1 = [2 * np.sum((p > g) & y) / max(2 * np.sum((p > g) & y) + np.sum((p > g) & ~y) + np.sum((p <= g) & y), 1)
          for g in grid[::10]]  # every 10th edge: the optimum found must be at least as good
    pred = p > np.float32(t)
    found = 2 * np.sum(pred & y) / (2 * np.sum(pred & y) + np.sum(pred & ~y) + np.sum(~pred & y))
    assert found >= max(f1) - 1e-12
    assert best_threshold(histogram(torch.from_numpy(p), torch.from_numpy(y.astype(np.int64))).numpy())[0] == t


def test_the_papers_runs_keep_half_and_an_unfitted_auto_asks_for_a_threshold(tmp_path):
    from slidemap.config_checks import TRAIN

    assert TRAIN["threshold"]("threshold", "auto") == "auto"
    with pytest.raises(InputError, match=r"threshold: must be auto or a number in \(0, 1\), got 'sometimes'"):
        TRAIN["threshold"]("threshold", "sometimes")
    path = save_checkpoint(tmp_path / "a.ckpt")
    assert load_checkpoint(path).threshold == 0.5
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["threshold"] = "auto"  # a run that stopped before its threshold was fitted
    torch.save(ckpt, path)
    model = load_checkpoint(path)
    with pytest.raises(InputError, match="threshold=auto was never fitted"):
        chosen_threshold(model, None)
    assert chosen_threshold(model, 0.4) == 0.4


def test_a_given_checkpoint_rescored_with_auto_gets_the_trained_auto_runs_threshold(synthetic_root, tmp_path):
    """``test_ckpt=CKPT threshold=auto`` fits the threshold on the validation area with the checkpoint's weights:
    the same threshold and scores as a ``threshold=auto`` run that trained those weights (the threshold plays no part
    in training, which is deterministic), and the given file is not rewritten. benchmarks/recipes.py rescores the
    paper's runs so instead of training them again."""
    import hashlib

    from conftest import TINY_TRAINING, TINY_UNET, compose_config

    def run(name: str, *overrides: str) -> dict:
        base = [f"data.root={synthetic_root}", *TINY_TRAINING, TINY_UNET, "scenario=china", "window=32"]
        out = run_training(compose_config("train", tmp_path / name, [*base, *overrides]))
        return json.loads((out / "metrics.json").read_text())

    paper, trained = run("paper"), run("auto", "threshold=auto")
    ckpt = paper["best_checkpoint"]
    before = hashlib.sha256(open(ckpt, "rb").read()).hexdigest()
    rescored = run("rescored", "threshold=auto", f"test_ckpt={ckpt}")
    assert hashlib.sha256(open(ckpt, "rb").read()).hexdigest() == before
    assert paper["threshold"] == 0.5 and trained["threshold"] != 0.5
    assert rescored["threshold"] == trained["threshold"] and rescored["stopped_by"] == "not trained"
    assert rescored["threshold_fit"] == trained["threshold_fit"]
    assert rescored["calibration"]["temperature"] == trained["calibration"]["temperature"]
    for key in ("tp", "fp", "fn", "tn", "average_precision"):
        assert rescored["areas"]["all"][key] == trained["areas"]["all"][key], key
    assert rescored["areas"]["all"]["average_precision"] == paper["areas"]["all"]["average_precision"]
