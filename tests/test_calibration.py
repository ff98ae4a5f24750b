"""Confidence calibration: the formula (ember_core.calibration), its fit (ember_train.calibration), and that the
Selector and the metrics apply the same saved calibration."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ember_core.calibration import Calibration, lead_over_others
from ember_core.model.tokenizer import load_tokenizer
from ember_core.processor import EmberProcessor, ProcessorConfig
from ember_train.calibration import fit_calibration
from ember_train.evaluate import Scores
from ember_train.metrics import expected_calibration_error


def _synthetic(truth: Calibration, head_scale: float = 1.0, seed: int = 0, shape=(3000, 5)):
    """Head logits and labels drawn from the probabilities `truth` gives the logits / head_scale."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, shape) * head_scale
    probs = truth.probabilities(torch.from_numpy(logits / head_scale)).double().numpy()
    return logits, (rng.random(shape) < probs).astype(np.float64)


def _top1_ece(logits: np.ndarray, labels: np.ndarray, calibration: Calibration) -> float:
    probs = calibration.probabilities(torch.from_numpy(logits)).numpy()
    top = probs.argmax(1)
    rows = np.arange(len(probs))
    return expected_calibration_error(probs[rows, top], labels[rows, top])


def _bce(logits: np.ndarray, labels: np.ndarray, calibration: Calibration) -> float:
    probs = calibration.probabilities(torch.from_numpy(logits)).double().clamp(1e-9, 1 - 1e-9).numpy()
    return float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))


def test_lead_over_others():
    z = torch.tensor([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0]])
    assert lead_over_others(z).tolist() == [[1.0, -2.0, -1.0], [0.0, 0.0, -1.0]]  # a tie at the top leads by 0
    assert lead_over_others(torch.tensor([[4.0]])).tolist() == [[0.0]]  # a fleet of one


def test_an_over_confident_head_is_softened():
    logits, labels = _synthetic(Calibration(), head_scale=4.0)
    fitted = fit_calibration([logits], [labels])
    assert fitted.scale == pytest.approx(0.25, rel=0.1)
    assert fitted.margin < 0.1 and abs(fitted.bias) < 0.1
    raw = expected_calibration_error(1 / (1 + np.exp(-logits.ravel())), labels.ravel())
    after = expected_calibration_error(fitted.probabilities(torch.from_numpy(logits)).numpy().ravel(), labels.ravel())
    assert after < raw / 2


def test_a_calibrated_head_keeps_the_raw_sigmoid():
    logits, labels = _synthetic(Calibration(), seed=1)
    fitted = fit_calibration([logits], [labels])
    assert fitted.scale == pytest.approx(1.0, abs=0.1)
    assert fitted.margin < 0.1 and abs(fitted.bias) < 0.1


def test_the_margin_term_fixes_the_top_robot_that_a_temperature_leaves_wrong():
    """When being far ahead of the others matters, the margin term recovers it and the top robot's ECE drops."""
    truth = Calibration(scale=0.8, margin=1.5, bias=-1.0)
    logits, labels = _synthetic(truth, seed=2)
    fitted = fit_calibration([logits], [labels])
    assert fitted.margin == pytest.approx(1.5, rel=0.2)
    assert fitted.scale == pytest.approx(0.8, rel=0.2)
    held_out_logits, held_out_labels = _synthetic(truth, seed=3)
    best_temperature = min((Calibration(scale=s) for s in np.linspace(0.05, 3.0, 60)),
                           key=lambda c: _bce(logits, labels, c))
    fitted_ece = _top1_ece(held_out_logits, held_out_labels, fitted)
    assert fitted_ece < 0.03
    assert _top1_ece(held_out_logits, held_out_labels, best_temperature) > 2 * fitted_ece


def test_sets_with_different_fleets_are_fitted_together():
    truth = Calibration(scale=0.5, margin=1.0)
    five, five_labels = _synthetic(truth, seed=4, shape=(1500, 5))
    six, six_labels = _synthetic(truth, seed=5, shape=(1500, 6))
    fitted = fit_calibration([five, six], [five_labels, six_labels])
    assert fitted.scale == pytest.approx(0.5, rel=0.25) and fitted.margin == pytest.approx(1.0, rel=0.25)


def test_empty_and_bad_input():
    assert fit_calibration([], []) == Calibration()
    assert fit_calibration([np.zeros((0, 5))], [np.zeros((0, 5))]) == Calibration()
    with pytest.raises(ValueError, match="targets"):
        fit_calibration([np.zeros((3, 5))], [np.zeros((3, 4))])
    with pytest.raises(ValueError, match="NaN"):
        fit_calibration([np.array([[math.nan, 0.0]])], [np.array([[1.0, 0.0]])])
    with pytest.raises(ValueError, match="0/1"):
        fit_calibration([np.zeros((1, 2))], [np.array([[0.5, 1.0]])])


def test_separable_labels_give_a_finite_calibration():
    """With labels the logits separate perfectly the likelihood alone would push to infinity; the prior stops it."""
    fitted = fit_calibration([np.array([[5.0, -5.0], [-4.0, 4.0]])], [np.array([[1.0, 0.0], [0.0, 1.0]])])
    assert all(math.isfinite(value) for value in (fitted.scale, fitted.margin, fitted.bias))
    assert fitted.scale > 1.0


@given(st.lists(st.floats(-20, 20), min_size=2, max_size=8, unique=True), st.floats(1e-3, 50), st.floats(0, 50),
       st.floats(-50, 50))
def test_calibration_never_changes_the_ranking(logits, scale, margin, bias):
    z = torch.tensor([logits], dtype=torch.float64)
    calibrated = Calibration(scale, margin, bias).logits(z)[0]
    order = np.argsort(-np.asarray(logits), kind="stable")
    assert all(calibrated[a] >= calibrated[b] for a, b in zip(order, order[1:]))


@pytest.mark.parametrize("record, message", [
    ({"scale": 0, "margin": 0, "bias": 0}, "calibration.scale"),
    ({"scale": 1, "margin": -0.5, "bias": 0}, "calibration.margin"),
    ({"scale": 1, "margin": 0, "bias": "1"}, "calibration.bias"),
    ({"scale": 1, "margin": 0, "bias": 0, "temperature": 2}, "unknown calibration field"),
    ([1, 0, 0], "JSON object of calibration fields"),
])
def test_a_bad_calibration_record_is_refused(record, message):
    with pytest.raises(ValueError, match=message):
        Calibration.from_record(record)


def test_the_processor_applies_the_saved_calibration_as_evaluation_does(fleet, tmp_path):
    """The Selector (processor.probabilities) and the metrics (Scores) turn logits into the same confidences,
    with the calibration that travels in processor_config.json."""
    logits, labels = _synthetic(Calibration(scale=0.8, margin=1.5, bias=-1.0), shape=(50, 5))
    calibration = fit_calibration([logits], [labels])
    saved = EmberProcessor(ProcessorConfig(image_size=32, image_tokens=4, max_task_chars=100, max_prompt_tokens=1000,
                                           calibration=calibration), load_tokenizer(), fleet)
    saved.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["calibration"]["margin"] == calibration.margin
    processor = EmberProcessor.from_pretrained(tmp_path)
    assert processor.config.calibration == calibration
    head = torch.from_numpy(logits).to(torch.bfloat16)  # what autocast gives on a GPU
    probabilities = processor.probabilities(head)
    assert probabilities.dtype == torch.float32 and probabilities.device.type == "cpu"
    z = head[0].double()
    expected = calibration.scale * z[0] + calibration.margin * (z[0] - z[1:].max()) + calibration.bias
    assert probabilities[0, 0].item() == pytest.approx(1 / (1 + math.exp(-float(expected))), rel=1e-5)
    scores = Scores(head.float().numpy(), labels.astype(np.float32))
    assert np.array_equal(scores.probabilities(calibration), probabilities.numpy())
    assert not np.allclose(scores.probabilities(), probabilities.numpy())


def test_a_model_saved_with_one_temperature_reads_as_its_scale(fleet, tmp_path):
    EmberProcessor(ProcessorConfig(image_size=32, image_tokens=4, max_task_chars=100, max_prompt_tokens=1000),
                   load_tokenizer(), fleet).save_pretrained(tmp_path)
    document = json.loads((tmp_path / "processor_config.json").read_text())
    del document["calibration"]
    (tmp_path / "processor_config.json").write_text(json.dumps({**document, "temperature": 0.5}))
    assert ProcessorConfig.load(tmp_path).calibration == Calibration(scale=2.0)
    logits = torch.tensor([[1.0, -1.0]])
    assert torch.allclose(EmberProcessor.from_pretrained(tmp_path).probabilities(logits), torch.sigmoid(logits / 0.5))
