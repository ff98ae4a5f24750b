"""The card classifier (ember_core.card_classifier): the optimum of its loss, each robot's phrases weighing the
same whatever their number, and the head's log-odds of it (ember_core.model.heads)."""
from __future__ import annotations

import numpy as np
import torch

from ember_core.card_classifier import CARD_CLASSIFIER_L2, fit_card_classifier
from ember_core.model.heads import _log_odds


def phrases(seed: int = 0, counts: tuple[int, ...] = (30, 4, 12), dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Noisy unit phrases around one direction per robot, `counts[i]` of robot i."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(counts), dim))
    owner = np.repeat(np.arange(len(counts)), counts)
    x = centres[owner] + 0.8 * rng.normal(size=(len(owner), dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True), owner


def loss(weight: torch.Tensor, bias: torch.Tensor, x: np.ndarray, owner: np.ndarray) -> torch.Tensor:
    """The classifier's objective written out on its own: balanced cross-entropy plus the L2 penalty."""
    counts = np.bincount(owner)
    sample_weight = torch.tensor(1.0 / counts[owner] / len(counts))
    scores = torch.tensor(x) @ weight.T + bias
    cross_entropy = torch.nn.functional.cross_entropy(scores, torch.tensor(owner), reduction="none")
    return (sample_weight * cross_entropy).sum() + CARD_CLASSIFIER_L2 * weight.pow(2).sum()


def test_the_fit_is_the_optimum_of_the_balanced_penalised_loss():
    x, owner = phrases()
    weight, bias = fit_card_classifier(x, owner, 3)
    w = torch.tensor(weight, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    loss(w, b, x, owner).backward()
    assert max(w.grad.abs().max().item(), b.grad.abs().max().item()) < 1e-5
    # Not a stationary point of anything else: from zero weights the gradient is far from zero.
    zero_w = torch.zeros_like(w, requires_grad=True)
    loss(zero_w, torch.zeros_like(b), x, owner).backward()
    assert zero_w.grad.abs().max().item() > 1e-2


def test_repeating_a_robots_phrases_changes_nothing():
    x, owner = phrases()
    weight, bias = fit_card_classifier(x, owner, 3)
    many = np.concatenate([x] + [x[owner == 1]] * 5)
    weight_many, bias_many = fit_card_classifier(many, np.concatenate([owner] + [owner[owner == 1]] * 5), 3)
    np.testing.assert_allclose(weight_many, weight, atol=1e-4)
    np.testing.assert_allclose(bias_many, bias, atol=1e-4)


def test_the_fit_is_deterministic_and_unit_normalises_its_inputs():
    x, owner = phrases(seed=1)
    first = fit_card_classifier(x, owner, 3)
    again = fit_card_classifier(3.0 * x, owner, 3)
    assert all(np.array_equal(a, b) for a, b in zip(first, fit_card_classifier(x, owner, 3)))
    np.testing.assert_allclose(again[0], first[0], atol=1e-5)


def test_a_robot_without_phrases_scores_below_every_other():
    x, owner = phrases()
    weight, bias = fit_card_classifier(x, owner, 4)
    scores = x @ weight.T + bias
    assert not weight[3].any() and (scores[:, 3:] < scores[:, :3].min(1, keepdims=True)).all()


def test_log_odds_are_the_logit_of_the_softmax_probability():
    scores = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 4.0, 4.0]], dtype=torch.float64)
    probabilities = torch.softmax(scores, dim=1)
    assert torch.allclose(_log_odds(scores), torch.log(probabilities / (1 - probabilities)))
    # A fleet of one robot: nothing to tell it from, so nothing to add.
    assert torch.equal(_log_odds(torch.tensor([[3.0], [-2.0]])), torch.zeros(2, 1))
