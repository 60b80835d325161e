"""Average precision from the probability histogram, MCC and object scores in metrics.json, and their seed
intervals in summary.csv and the report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryAveragePrecision

from slidemap.evaluation.histogram import ProbabilityHistogram, average_precision, best_threshold, histogram
from slidemap.evaluation.objects import object_counts, object_record


def test_average_precision_equals_torchmetrics_to_1e3():
    gen = torch.Generator().manual_seed(0)
    y = (torch.rand(200_000, generator=gen) < 0.03).long()  # 3% landslide pixels
    p = torch.sigmoid(torch.randn(200_000, generator=gen) + 2.0 * y)
    target = torch.where(torch.rand(200_000, generator=gen) < 0.1, torch.full_like(y, -1), y)  # 10% unlabelled
    metric = ProbabilityHistogram()
    for chunk in range(4):  # batch by batch, as a test loop
        s = slice(chunk * 50_000, (chunk + 1) * 50_000)
        metric.update(p[s], target[s])
    expected = BinaryAveragePrecision(ignore_index=-1)(p, target).item()
    assert average_precision(metric.compute().numpy()) == pytest.approx(expected, abs=1e-3)


def test_average_precision_by_hand():
    """Scores 0.9 (landslide), 0.8 (background), 0.7 (landslide), 0.1 (background): precision 1 at recall 1/2,
    2/3 at recall 1: AP = 0.5 * 1 + 0.5 * 2/3 = 5/6."""
    hist = histogram(torch.tensor([0.9, 0.8, 0.7, 0.1]), torch.tensor([1, 0, 1, 0]))
    assert average_precision(hist.numpy()) == pytest.approx(5 / 6)
    assert average_precision(histogram(torch.tensor([0.3]), torch.tensor([0])).numpy()) is None


def test_best_threshold_by_hand():
    """Landslides at 0.30, 0.60, 0.70, background at 0.20, 0.35, 0.65: above 0.2 (t in [0.2, 0.3)): TP 3, FP 2 ->
    F1 6/8; above 0.35: TP 2, FP 1, FN 1 -> 4/6; above 0.3 (t in [0.3, 0.35)): TP 2, FP 2 -> 4/7. Best 0.75 for
    thresholds from 0.2 to just below 0.3: the one nearest 0.5 is the last bin edge below 0.3 (the maps compare
    float32 probabilities with ``p > t`` in float32, where 0.3 would drop the landslide at 0.30)."""
    p = torch.tensor([0.30, 0.60, 0.70, 0.20, 0.35, 0.65])
    t, f1 = best_threshold(histogram(p, torch.tensor([1, 1, 1, 0, 0, 0])).numpy())
    assert f1 == pytest.approx(0.75) and t == pytest.approx(0.2999)
    assert (p.numpy() > t).tolist() == [True, True, True, False, True, True]  # the maps' rule: p > t
    assert best_threshold(np.zeros((2, 10))) == (0.5, None)
    edge = histogram(torch.tensor([0.5]), torch.tensor([1]), n_bins=10).numpy()  # 0.4 < 0.5 <= 0.5: bin 4
    assert edge[1].nonzero()[0].tolist() == [4]


def test_object_record_by_hand():
    label = np.zeros((6, 6), np.uint8)
    label[0:2, 0:2] = 1  # landslide A
    label[4:6, 4:6] = 1  # landslide B (missed)
    pred = np.zeros((6, 6), np.uint8)
    pred[1, 1] = 1  # hits A with one pixel
    pred[0, 5] = 1  # a false alarm
    record = object_record(object_counts(pred, label, np.ones((6, 6), bool)))
    assert record == {"landslides": 2, "landslides_hit": 1, "polygons": 2, "false_alarms": 1, "found": 0.5,
                      "hit": 0.5, "min_overlap": "1 pixel"}


@pytest.mark.slow
def test_a_run_records_ap_mcc_objects_and_the_report_has_their_intervals(cfg_train, tmp_path):
    from conftest import compose_config, run_training

    from slidemap.reporting.report import write_report

    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        cfg = compose_config("train", sweep / f"s{seed}", [*cfg_train().hydra.overrides.task, f"seed={seed}",
                                                            "scenario=china", "window=32"])
        run_training(cfg)
    record = json.loads((sweep / "s0" / "metrics.json").read_text())
    for area in ("china", "all"):
        m = record["areas"][area]
        assert 0 <= m["average_precision"] <= 1 and -1 <= m["mcc"] <= 1
        assert m["objects"]["min_overlap"] == "1 pixel" and m["objects"]["landslides"] > 0
    assert record["threshold"] == 0.5 and "threshold_fit" not in record
    report = write_report(sweep)
    rows = {r["area"]: r for r in csv.DictReader((report.parent / "summary.csv").open())}
    assert rows["china"]["n"] == "2" and rows["china"]["average_precision_ci_low"] != ""
    assert rows["china"]["objects_found_mean"] != "" and float(rows["china"]["threshold_mean"]) == 0.5
    assert "## Threshold-free, MCC and object scores" in report.read_text()
