"""Temperature scaling: an over-confident head gets T > 1 and lower ECE; a calibrated one keeps T near 1."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ember_core.model.tokenizer import load_tokenizer
from ember_core.processor import EmberProcessor, ProcessorConfig
from ember_train.calibration import MAX_TEMPERATURE, fit_temperature
from ember_train.evaluate import Scores
from ember_train.metrics import expected_calibration_error


def _synthetic(scale: float, seed: int = 0, shape=(2000, 5)):
    """Logits = scale x true log-odds, labels drawn from the true probabilities."""
    rng = np.random.default_rng(seed)
    log_odds = rng.normal(0.0, 1.5, shape)
    labels = (rng.random(shape) < 1.0 / (1.0 + np.exp(-log_odds))).astype(np.float64)
    return scale * log_odds, labels


def _ece(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    # Every (task, robot) sigmoid output against its own label: what the BCE fit calibrates.
    probs = 1.0 / (1.0 + np.exp(-logits / temperature))
    return expected_calibration_error(probs.ravel(), labels.ravel())


def test_over_confident_head_is_softened():
    logits, labels = _synthetic(scale=4.0)
    temperature = fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels))
    before, after = _ece(logits, labels, 1.0), _ece(logits, labels, temperature)
    print(f"T = {temperature:.4f}  ECE before = {before:.4f}  after = {after:.4f}")
    assert temperature > 1.0
    assert temperature == pytest.approx(4.0, rel=0.1)
    assert after < before


def test_calibrated_head_keeps_temperature_near_one():
    logits, labels = _synthetic(scale=1.0, seed=1)
    temperature = fit_temperature(torch.from_numpy(logits).float(), torch.from_numpy(labels).float())
    assert temperature == pytest.approx(1.0, abs=0.1)


def test_empty_input_and_bad_input():
    assert fit_temperature(torch.zeros(0, 5), torch.zeros(0, 5)) == 1.0
    with pytest.raises(ValueError, match="targets"):
        fit_temperature(torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(torch.tensor([[float("nan"), 0.0]]), torch.tensor([[1.0, 0.0]]))


def test_degenerate_logits_are_clamped():
    # Logits pointing the wrong way: the loss keeps falling as T grows, so the fit hits the cap.
    temperature = fit_temperature(torch.tensor([[5.0, -5.0]]), torch.tensor([[0.0, 1.0]]))
    assert temperature == MAX_TEMPERATURE


def test_the_processor_applies_the_fitted_temperature_as_evaluation_does(fleet, tmp_path):
    """The Selector (processor.probabilities) and the metrics (Scores) turn logits into the same
    probabilities, with the temperature that travels in processor_config.json."""
    logits, labels = _synthetic(scale=4.0, shape=(50, 5))
    temperature = fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels))
    saved = EmberProcessor(ProcessorConfig(image_size=32, image_tokens=4, max_task_chars=100, max_prompt_tokens=1000,
                                           temperature=temperature),
                           load_tokenizer(), fleet)
    saved.save_pretrained(tmp_path)
    processor = EmberProcessor.from_pretrained(tmp_path)
    assert processor.temperature == temperature
    head = torch.from_numpy(logits).to(torch.bfloat16)  # what autocast gives on a GPU
    probabilities = processor.probabilities(head)
    assert probabilities.dtype == torch.float32 and probabilities.device.type == "cpu"
    first = float(head[0, 0])
    assert probabilities[0, 0].item() == pytest.approx(1 / (1 + math.exp(-first / temperature)), rel=1e-6)
    scores = Scores(head.float().numpy(), labels.astype(np.float32))
    assert np.array_equal(scores.probabilities(processor.temperature), probabilities.numpy())
    assert not np.allclose(scores.probabilities(1.0), probabilities.numpy())
