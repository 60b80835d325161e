"""Calibrated probabilities: temperature fitting and ECE on hand-made numbers, and a tiny run that stores both."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryCalibrationError

from slidemap.errors import InputError
from slidemap.evaluation.calibration import (CalibrationBins, bins_record, ece, fit_temperature, pool_bins,
                                             reliability_bins)
from slidemap.mapping.checkpoint import load_checkpoint
from slidemap.training.calibrate import rewrite_calibration


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_temperature_matches_the_landslide_share_of_an_overconfident_model():
    """Logits +-4 (p = 0.982) where only 80% of the +4 pixels and 20% of the -4 pixels are landslides: the best T
    makes sigmoid(4 / T) = 0.8, so T = 4 / ln 4."""
    z = np.array([4.0] * 10 + [-4.0] * 10)
    y = np.array([1] * 8 + [0] * 2 + [1] * 2 + [0] * 8)
    assert fit_temperature(z, y) == pytest.approx(4 / logit(0.8), rel=1e-3)


def test_temperature_ignores_invalid_pixels_and_sharpens_an_underconfident_model():
    z = np.array([[0.5, 0.5, -0.5, -0.5, 9.0]])
    y = np.array([[1, 1, 0, 0, 0]])  # perfectly separated: the sharper the better, up to the bound
    valid = np.array([[True, True, True, True, False]])  # the wrong, confident pixel is nodata
    t = fit_temperature(z, y, valid, bounds=(0.05, 20.0))
    assert t == pytest.approx(0.05, rel=1e-2)
    assert fit_temperature(z, y) > 0.05  # counted, it pulls T up


def test_nothing_to_fit_gives_temperature_one():
    assert fit_temperature(np.array([1.0, 2.0]), np.array([1, 1])) == 1.0
    assert fit_temperature(np.zeros(0), np.zeros(0)) == 1.0
    assert fit_temperature(np.ones(3), np.array([0, 1, 1]), np.zeros(3, bool)) == 1.0


def test_temperature_keeps_the_binary_map_at_threshold_one_half():
    z = np.linspace(-6, 6, 101)
    for t in (0.3, 1.0, 2.7):
        assert np.array_equal(1 / (1 + np.exp(-z / t)) > 0.5, z > 0)


def test_ece_by_hand():
    """0.1 twice with one landslide: |0.1 - 0.5| on half the pixels; 0.9 twice, both landslides: |0.9 - 1| on half."""
    prob = np.array([0.1, 0.1, 0.9, 0.9, 0.7])
    target = np.array([0, 1, 1, 1, 0])
    valid = np.array([True, True, True, True, False])
    bins = reliability_bins(prob, target, valid)
    assert sum(bins["count"]) == 4 and bins["count"][1] == 2 and bins["count"][13] == 2
    assert bins["landslides"][1] == 1 and bins["landslides"][13] == 2
    assert ece(bins) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)


def test_ece_equals_torchmetrics_on_random_maps_with_nodata():
    rng = np.random.default_rng(0)
    prob = rng.random(5000).astype(np.float32)
    prob[:7] = [0.0, 1.0, 1 / 15, 2 / 15, 14 / 15, 0.5, np.nan]  # bin edges, both ends, a NaN (nodata)
    target = (rng.random(5000) < prob ** 2).astype(np.int64)
    valid = rng.random(5000) > 0.1
    keep = valid & np.isfinite(prob)
    expected = BinaryCalibrationError(n_bins=15, norm="l1")(torch.from_numpy(prob[keep]),
                                                            torch.from_numpy(target[keep]))
    assert ece(reliability_bins(prob, target, valid)) == pytest.approx(float(expected), abs=1e-6)


def test_bins_pool_and_the_metric_ignores_minus_one():
    metric = CalibrationBins()
    metric.update(torch.tensor([0.1, 0.95, 0.5]), torch.tensor([0, 1, -1]))
    metric.update(torch.tensor([0.95]), torch.tensor([0]))
    bins = bins_record(metric.compute())
    assert bins["count"][1] == 1 and bins["count"][14] == 2 and sum(bins["count"]) == 3
    assert bins["landslides"][14] == 1
    pooled = pool_bins([bins, bins])
    assert pooled["count"][14] == 4 and pooled["probability_sum"][14] == pytest.approx(3.8)
    assert ece(pooled) == pytest.approx(ece(bins))
    assert math.isnan(ece({"count": [0] * 15, "probability_sum": [0.0] * 15, "landslides": [0] * 15}))


def test_training_fits_stores_and_scores_the_temperature(tiny_run):
    """The run writes T into best.ckpt and metrics.json, and ECE (calibrated and not) per area from valid pixels."""
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    record = metrics["calibration"]
    assert record["fitted_on"] == "validation" and record["pixels"] > 0 and record["temperature"] > 0
    assert record["val_bce"] <= record["val_bce_uncalibrated"] + 1e-9  # T = 1 is among the candidates
    model = load_checkpoint(tiny_run / "checkpoints" / "best.ckpt")
    assert model.temperature == pytest.approx(record["temperature"])
    for area, result in metrics["areas"].items():
        assert 0 <= result["ece"] <= 1 and 0 <= result["ece_uncalibrated"] <= 1
        bins = record["reliability"][area]
        assert sum(bins["count"]) == sum(result[k] for k in ("tp", "fp", "fn", "tn"))  # every valid test pixel
        assert result["ece"] == pytest.approx(ece(bins))


def test_checkpoint_temperature_default_and_malformed(tiny_run, tmp_path):
    ckpt = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    del ckpt["hyper_parameters"]["calibration"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert load_checkpoint(tmp_path / "old.ckpt").temperature == 1.0  # written before calibration existed
    rewrite_calibration(tmp_path / "old.ckpt", {"temperature": 2.5})
    assert load_checkpoint(tmp_path / "old.ckpt").temperature == 2.5
    rewrite_calibration(tmp_path / "old.ckpt", {"temperature": -1})
    with pytest.raises(InputError, match="temperature must be a positive number"):
        load_checkpoint(tmp_path / "old.ckpt")


def test_report_reliability_pools_runs_by_model(tmp_path):
    """Two runs of one model: bins add up; ECE of the pooled bins by hand; the figure and section are written."""
    from slidemap.reporting.reliability import FIGURE, reliability_data, write_reliability

    def run(count, psum, pos, t, raw):
        zeros = [0] * 15
        bins = {"count": zeros[:1] + [count] + zeros[2:], "probability_sum": [0.0] + [psum] + [0.0] * 13,
                "landslides": zeros[:1] + [pos] + zeros[2:]}
        return {"model": "unet", "areas": {"all": {"f1": 0.5, "ece_uncalibrated": raw}},
                "calibration": {"temperature": t, "reliability": {"all": bins}}}

    runs = [run(10, 1.0, 3, 1.5, 0.3), run(30, 3.0, 1, 2.5, 0.1),
            {"model": "resunet", "areas": {"all": {"f1": 0.4}}}]  # written before calibration: left out
    data = reliability_data(runs)
    assert list(data) == ["unet"] and data["unet"]["runs"] == 2
    assert data["unet"]["ece"] == pytest.approx(abs(4.0 - 4) / 40)  # mean p 0.1, share 4/40 = 0.1: calibrated
    assert data["unet"]["mean_temperature"] == pytest.approx(2.0)
    assert data["unet"]["mean_ece_uncalibrated"] == pytest.approx(0.2)
    text = write_reliability(runs, tmp_path)
    assert "## Calibration" in text and "| unet | 2 | 2.00 | 0.00 | 20.00 |" in text
    assert (tmp_path / FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert write_reliability(runs[2:], tmp_path / "none") == ""
