"""Robot-selection metrics against small examples worked out by hand, plus AP against scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest

from ember_train.metrics import (
    bin_accuracy_ranges,
    calibration_check,
    calibration_checks,
    compute_metrics,
    confusion_matrix,
    expected_calibration_error,
    format_metrics,
    metric_key,
    predicted_sets,
)

NAMES = ["Drone", "Underwater Robot", "Humanoid"]

# 4 tasks x 3 robots. Predicted sets at threshold 0.5 (top-1 always included):
#   task 0: gold {D, U}  pred {D, U}  top-1 D (hit)   IoU 1
#   task 1: gold {U}     pred {U}     top-1 U (hit)   IoU 1
#   task 2: gold {D}     pred {H}     top-1 H (miss)  IoU 0  (nothing >= 0.5, so only the forced top-1)
#   task 3: gold {D, H}  pred {D, U}  top-1 D (hit)   IoU 1/3
PROBS = np.array(
    [
        [0.90, 0.60, 0.10],
        [0.20, 0.70, 0.40],
        [0.30, 0.20, 0.45],
        [0.80, 0.55, 0.30],
    ]
)
TARGETS = np.array(
    [
        [1, 1, 0],
        [0, 1, 0],
        [1, 0, 0],
        [1, 0, 1],
    ]
)


def test_predicted_sets_always_hold_the_top1():
    sets = predicted_sets(PROBS)
    expected = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(sets, expected)
    assert predicted_sets(np.full((2, 3), 0.1)).sum(axis=1).tolist() == [1, 1]


def test_compute_metrics_hand_example():
    m = compute_metrics(PROBS, TARGETS, NAMES)
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["exact_set_accuracy"] == pytest.approx(2 / 4)
    assert m["multi_robot_iou"] == pytest.approx((1 + 1 + 0 + 1 / 3) / 4)
    # Drone: TP 2 (tasks 0, 3), FP 0, FN 1 (task 2).
    assert m["Drone_precision"] == pytest.approx(1.0)
    assert m["Drone_recall"] == pytest.approx(2 / 3)
    assert m["Drone_f1"] == pytest.approx(0.8)
    # Underwater Robot: TP 2 (tasks 0, 1), FP 1 (task 3), FN 0.
    assert m["Underwater_Robot_precision"] == pytest.approx(2 / 3)
    assert m["Underwater_Robot_recall"] == pytest.approx(1.0)
    assert m["Underwater_Robot_f1"] == pytest.approx(0.8)
    # Humanoid: TP 0, FP 1 (task 2), FN 1 (task 3).
    assert (m["Humanoid_precision"], m["Humanoid_recall"], m["Humanoid_f1"]) == (0.0, 0.0, 0.0)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.8 + 0.0) / 3)
    # Top-1 confidences 0.9, 0.7, 0.45, 0.8 sit in four different bins; correctness 1, 1, 0, 1.
    assert m["expected_calibration_error"] == pytest.approx((0.1 + 0.3 + 0.45 + 0.2) / 4)
    # Rankings: Drone positives at ranks 1, 2, 3 -> AP 1; Underwater at 1, 2 -> 1; Humanoid at 3 -> 1/3.
    assert m["mean_average_precision"] == pytest.approx((1 + 1 + 1 / 3) / 3)
    assert m["num_samples"] == 4


def test_robot_never_predicted_has_zero_precision_not_nan():
    probs = np.array([[0.9, 0.2, 0.1], [0.8, 0.3, 0.2]])
    targets = np.array([[1, 0, 1], [1, 0, 0]])
    m = compute_metrics(probs, targets, NAMES)
    assert (m["Humanoid_precision"], m["Humanoid_recall"], m["Humanoid_f1"]) == (0.0, 0.0, 0.0)
    assert not any(np.isnan(v) for v in m.values())
    # Underwater is neither gold nor predicted, so macro-F1 averages Drone (1.0) and Humanoid (0.0) only.
    assert m["Underwater_Robot_f1"] == 0.0
    assert m["macro_f1"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "probs, targets, iou",
    [
        ([[0.9, 0.8, 0.1]], [[1, 1, 0]], 1.0),  # predicted set equals gold
        ([[0.9, 0.1, 0.1]], [[0, 1, 1]], 0.0),  # disjoint
        ([[0.9, 0.8, 0.7]], [[1, 0, 0]], 1 / 3),  # superset of gold
        ([[0.9, 0.1, 0.1]], [[1, 1, 0]], 1 / 2),  # subset of gold
    ],
)
def test_multi_robot_iou_edge_cases(probs, targets, iou):
    assert compute_metrics(np.array(probs), np.array(targets), NAMES)["multi_robot_iou"] == pytest.approx(iou)


def test_ece_edge_cases():
    # Confidence exactly 1.0 must land in the last bin, 0.0 in the first, without an index error.
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([0.0]), np.array([0])) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([0, 1])) == pytest.approx(1.0)
    # All in the bin [0.6, 0.667): accuracy 0.5, mean confidence 0.625.
    conf = np.array([0.61, 0.62, 0.63, 0.64])
    assert expected_calibration_error(conf, np.array([1, 1, 0, 0])) == pytest.approx(0.125)
    # Perfect calibration: confidence 0.75 and 3 of 4 correct.
    assert expected_calibration_error(np.full(4, 0.75), np.array([1, 1, 1, 0])) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0
    with pytest.raises(ValueError, match="confidences"):
        expected_calibration_error(np.array([1.2]), np.array([1]))


def test_calibration_check_is_the_ece_of_outcomes_drawn_from_the_confidences():
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.2, 1.0, 40)
    correct = rng.random(40) < conf
    check = calibration_check(conf, correct, draws=200, seed=7)
    # The same draws, one expected_calibration_error at a time.
    drawn = np.random.default_rng(7).random((200, 40)) < conf
    errors = np.array([expected_calibration_error(conf, row) for row in drawn])
    assert check.observed == expected_calibration_error(conf, correct)
    assert check.if_calibrated == pytest.approx(errors.mean(), abs=1e-12)
    assert check.upper == pytest.approx(np.quantile(errors, 0.95), abs=1e-12)
    assert check.p_value == pytest.approx(np.mean(errors >= check.observed - 1e-12))
    assert check == calibration_check(conf, correct, draws=200, seed=7)  # seeded: the same every run


def test_calibration_check_draws_in_blocks_without_changing_the_draws(monkeypatch):
    import ember_train.metrics as metrics

    conf = np.random.default_rng(5).uniform(0.0, 1.0, 50)
    whole = metrics.calibration_check(conf, conf > 0.5, draws=30, seed=2)
    monkeypatch.setattr(metrics, "_DRAW_CELLS", 120)  # 2 draws of 50 outcomes at a time
    assert metrics.calibration_check(conf, conf > 0.5, draws=30, seed=2) == whole


def test_calibration_check_tells_sampling_noise_from_miscalibration():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.4, 1.0, 30)
    calibrated = calibration_check(conf, rng.random(30) < conf)
    # 30 calibrated tasks show an ECE far above 0, and it is within what a calibrated model shows.
    assert calibrated.if_calibrated > 0.08 and calibrated.p_value > 0.05
    overconfident = calibration_check(np.full(30, 0.95), np.arange(30) < 15)  # half right at 0.95
    assert overconfident.observed == pytest.approx(0.45) and overconfident.p_value == 0.0
    assert overconfident.upper < 0.1
    assert "p = 0.00" in overconfident.describe()


def test_calibration_checks_read_the_top_robot_and_every_robot():
    probs = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.6], [0.1, 0.2, 0.7]])
    targets = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1]])
    checks = calibration_checks(probs, targets, draws=50)
    metrics = compute_metrics(probs, targets, NAMES)
    assert checks["top-1 ECE"].observed == pytest.approx(metrics["expected_calibration_error"], abs=1e-12)
    assert checks["robot ECE"].observed == pytest.approx(metrics["robot_calibration_error"], abs=1e-12)


def test_bin_accuracy_ranges_cover_the_confidence_of_filled_bins_only():
    conf = np.concatenate([np.full(200, 0.9), np.full(5, 0.35)])
    low, high = bin_accuracy_ranges(conf, bins=10)
    assert np.isnan(low[[0, 1, 2, 4, 5, 6, 7, 8]]).all() and np.isnan(high[0])
    assert 0.85 < low[9] < 0.9 < high[9] < 0.95  # 200 tasks at 0.9: a narrow range
    assert low[3] <= 0.2 and high[3] >= 0.6  # 5 tasks at 0.35: a wide one


def test_average_precision_matches_sklearn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(7)
    probs = rng.random((200, 5))  # continuous scores: no ties, where sklearn groups thresholds
    targets = (rng.random((200, 5)) < 0.3).astype(int)
    targets[np.arange(200), rng.integers(0, 5, 200)] = 1
    names = [f"Robot {j}" for j in range(5)]
    expected = np.mean([average_precision_score(targets[:, j], probs[:, j]) for j in range(5)])
    assert compute_metrics(probs, targets, names)["mean_average_precision"] == pytest.approx(expected)


def test_average_precision_ties_keep_input_order():
    # Robot 0 has equal scores: its positive, listed second, ranks second -> AP 1/2; robot 1 ranks its positives first -> 1.
    probs, targets = np.array([[0.5, 0.1], [0.5, 0.9]]), np.array([[0, 1], [1, 1]])
    assert compute_metrics(probs, targets, ["a", "b"])["mean_average_precision"] == pytest.approx(0.75)


def test_confusion_matrix_hand_example():
    expected = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(confusion_matrix(PROBS, TARGETS), expected)


def test_confusion_matrix_miss_spreads_over_gold_set():
    matrix = confusion_matrix(np.array([[0.1, 0.2, 0.9]]), np.array([[1, 1, 0]]))
    expected = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(matrix, expected)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="no suitable robot"):
        compute_metrics(np.array([[0.5, 0.5, 0.5]]), np.array([[0, 0, 0]]), NAMES)
    with pytest.raises(ValueError, match="robot names"):
        compute_metrics(PROBS, TARGETS, NAMES[:2])
    with pytest.raises(ValueError, match="logits"):
        compute_metrics(PROBS * 3, TARGETS, NAMES)


def test_format_metrics_uses_the_known_names():
    names = ["Drone", "Underwater Robot", "Humanoid", "Robot with Wheels", "Robot with Legs"]
    rng = np.random.default_rng(0)
    targets = np.eye(5, dtype=int)[rng.integers(0, 5, 20)]
    text = format_metrics(compute_metrics(rng.random((20, 5)), targets, names), names,
                          "Validation metrics (Epoch 0, Step 534):")
    lines = text.splitlines()
    assert lines[0] == "Validation metrics (Epoch 0, Step 534):"
    assert lines[1].startswith("  accuracy: ") and lines[2].startswith("  macro_f1: ")
    assert "  Per-Robot Performance:" in lines
    for key in ("Drone_precision", "Underwater_Robot_recall", "Robot_with_Wheels_f1", "Robot_with_Legs_f1",
                "expected_calibration_error", "multi_robot_iou", "exact_set_accuracy", "mean_average_precision"):
        assert any(line.strip().startswith(f"{key}: ") for line in lines), key
    assert "  accuracy: " in text and len(lines[1].split(": ")[1]) == 6  # 4 decimals, e.g. 0.7214
    assert metric_key("Robot with Legs") == "Robot_with_Legs"
