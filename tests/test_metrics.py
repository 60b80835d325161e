"""The paper's pixel-wise metrics, checked on a 4x4 mask counted by hand."""

from __future__ import annotations

import numpy as np
import math

import pytest

from slidemap.evaluation.scoring import area_result, confusion_counts, pooled, scores

PRED = np.array([[1, 1, 0, 0],
                 [1, 1, 0, 0],
                 [0, 0, 0, 0],
                 [0, 0, 1, 0]])
TARGET = np.array([[1, 0, 0, 0],
                   [1, 1, 1, 0],
                   [0, 0, 0, 1],
                   [0, 0, 0, 1]])
VALID = np.array([[1, 1, 1, 1],
                  [1, 1, 1, 1],
                  [1, 1, 1, 1],
                  [0, 0, 0, 0]], bool)  # the last row is nodata


def test_counts_on_the_valid_pixels_only():
    # Rows 0-2: TP at (0,0), (1,0), (1,1); FP at (0,1); FN at (1,2), (2,3); TN = 12 - 6 = 6.
    # Row 3 (FP at (3,2), FN at (3,3)) is nodata and must not count.
    assert confusion_counts(PRED, TARGET, VALID) == {"tp": 3, "fp": 1, "fn": 2, "tn": 6}


def test_counts_without_a_mask_use_every_pixel():
    assert confusion_counts(PRED, TARGET) == {"tp": 3, "fp": 2, "fn": 3, "tn": 8}


def test_counts_accept_boolean_and_float_inputs():
    got = confusion_counts(PRED.astype(bool), TARGET.astype(np.float32), VALID.astype(np.uint8))
    assert got == {"tp": 3, "fp": 1, "fn": 2, "tn": 6}


def test_scores_of_the_4x4_example():
    # P = 3 / (3 + 1) = 0.75, R = 3 / (3 + 2) = 0.6, F1 = 2 * 0.45 / 1.35 = 2/3, IoU = 3 / (3 + 1 + 2) = 0.5.
    s = scores(**{k: v for k, v in confusion_counts(PRED, TARGET, VALID).items() if k != "tn"})
    assert s == pytest.approx({"precision": 0.75, "recall": 0.6, "f1": 2 / 3, "iou": 0.5})


def test_f1_equals_twice_tp_over_twice_tp_plus_errors():
    for tp, fp, fn in [(1, 0, 0), (5, 3, 2), (7, 0, 9), (100, 1, 1)]:
        s = scores(tp, fp, fn)
        assert s["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert s["iou"] == pytest.approx(tp / (tp + fp + fn))


@pytest.mark.parametrize(("tp", "fp", "fn", "expected", "undefined"), [
    (0, 0, 0, (None, None, None, None), {"precision", "recall", "f1", "iou"}),  # nothing predicted, nothing to find
    (0, 0, 5, (None, 0.0, 0.0, 0.0), {"precision"}),  # nothing predicted: precision 0 / 0; a miss: recall, F1 0
    (0, 3, 0, (0.0, None, None, None), {"recall", "f1", "iou"}),  # nothing to find: recall 0 / 0, no F1 of it
    (0, 3, 5, (0.0, 0.0, 0.0, 0.0), set()),  # P + R = 0 but 2TP + FP + FN = 8: F1 0 / 8 = 0
    (4, 0, 0, (1.0, 1.0, 1.0, 1.0), set()),
])
def test_empty_denominators_are_undefined_not_zero(tp, fp, fn, expected, undefined):
    s = scores(tp, fp, fn)
    got = (s["precision"], s["recall"], s["f1"], s["iou"])
    assert [g is None for g in got] == [e is None for e in expected]
    assert [g for g in got if g is not None] == pytest.approx([e for e in expected if e is not None])
    result = area_result({"tp": tp, "fp": fp, "fn": fn, "tn": 10})
    assert set(result.get("undefined", {})) == undefined | ({"mcc"} if tp + fn == 0 else set())
    assert all(result[k] is None for k in undefined)


def test_pooled_sums_counts():
    a = {"tp": 9, "fp": 1, "fn": 0, "tn": 90}
    b = {"tp": 1, "fp": 0, "fn": 9, "tn": 40}
    assert pooled([a, b]) == {"tp": 10, "fp": 1, "fn": 9, "tn": 130}
    assert pooled([]) == {"tp": 0, "fp": 0, "fn": 0, "tn": 0}


def test_all_pools_pixels_it_is_not_the_mean_of_per_area_scores():
    a = {"tp": 9, "fp": 1, "fn": 0, "tn": 90}  # F1 = 18 / 19
    b = {"tp": 1, "fp": 0, "fn": 9, "tn": 40}  # F1 = 2 / 11
    f1 = {k: scores(c["tp"], c["fp"], c["fn"])["f1"] for k, c in {"a": a, "b": b}.items()}
    assert f1 == pytest.approx({"a": 18 / 19, "b": 2 / 11})
    all_counts = pooled([a, b])
    all_f1 = scores(all_counts["tp"], all_counts["fp"], all_counts["fn"])["f1"]
    assert all_f1 == pytest.approx(20 / 30)  # 2 * 10 / (2 * 10 + 1 + 9)
    assert abs(all_f1 - (18 / 19 + 2 / 11) / 2) > 0.1  # the mean would be 0.565


def test_mcc_by_hand():
    """tp 6, fp 2, fn 1, tn 11: (66 - 2) / sqrt(8 * 7 * 13 * 12) = 64 / sqrt(8736)."""
    from slidemap.evaluation.scoring import mcc

    assert area_result({"tp": 6, "fp": 2, "fn": 1, "tn": 11})["mcc"] == pytest.approx(64 / math.sqrt(8736))
    assert mcc(0, 0, 5, 10) == 0.0 and mcc(5, 10, 0, 0) == 0.0 and mcc(5, 0, 0, 0) is None and mcc(0, 3, 0, 10) is None
    assert mcc(5, 0, 0, 10) == pytest.approx(1.0) and mcc(0, 10, 5, 0) == pytest.approx(-1.0)
    assert area_result({"tp": 5, "fp": 0, "fn": 0, "tn": 0})["undefined"]["mcc"].startswith("no reference background")
