"""Stage 3 losses on hand-computed cases: focal factor, label smoothing, class weights, masked LM loss."""
from __future__ import annotations

import math

import pytest
import torch

from ember_train.losses import choice_loss, class_weights, focal_loss, stage3_loss

LOGITS = torch.tensor([[2.0, -1.0]])
TARGETS = torch.tensor([[1.0, 0.0]])


def bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_without_focus_smoothing_or_weights_it_is_binary_cross_entropy():
    expected = (bce(2.0, 1.0) + bce(-1.0, 0.0)) / 2
    assert focal_loss(LOGITS, TARGETS, gamma=0.0, label_smoothing=0.0).item() == pytest.approx(expected, rel=1e-6)


def test_focal_factor_down_weights_well_classified_robots():
    p1, p2 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    expected = ((1 - p1) ** 2 * bce(2.0, 1.0) + p2 ** 2 * bce(-1.0, 0.0)) / 2
    assert focal_loss(LOGITS, TARGETS, gamma=2.0, label_smoothing=0.0).item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_moves_targets_towards_one_half():
    # 0.1 smoothing: target 1 -> 0.95, target 0 -> 0.05.
    expected = (bce(2.0, 0.95) + bce(-1.0, 0.05)) / 2
    assert focal_loss(LOGITS, TARGETS, gamma=0.0, label_smoothing=0.1).item() == pytest.approx(expected, rel=1e-6)


def test_class_weights_scale_each_robot_column():
    weights = torch.tensor([3.0, 0.5])
    expected = (3.0 * bce(2.0, 1.0) + 0.5 * bce(-1.0, 0.0)) / 2
    got = focal_loss(LOGITS, TARGETS, gamma=0.0, label_smoothing=0.0, class_weights=weights).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_class_weights_from_frequencies():
    targets = torch.tensor([[1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=torch.float)
    weights = class_weights(targets)
    # counts 4, 1, 0 -> mean 5/3; the never-positive robot is clipped.
    assert weights.tolist() == pytest.approx([5 / 12, 5 / 3, 10.0])


def choice_batch(relevance=(0.0, 0.0, 0.0)):
    """One sequence of 3 positions with one decision point at position 1: candidates 0, 2 (and a padded slot)."""
    return {"targets": TARGETS, "choice_positions": torch.tensor([[1, 0]]), "choice_mask": torch.tensor([[True, False]]),
            "choice_candidates": torch.tensor([[[0, 2, 0], [0, 0, 0]]]),
            "candidate_mask": torch.tensor([[[True, True, False], [False, False, False]]]),
            "choice_relevance": torch.tensor([[list(relevance), [0.0, 0.0, 0.0]]]), "choice_targets": torch.tensor([[1, 0]])}


def scores_by_index(hidden, candidates, relevance):
    """Hidden states hold the logit of every token id; relevance adds as is."""
    return torch.gather(hidden, -1, candidates) + relevance


def test_choice_loss_is_the_cross_entropy_among_the_candidates_only():
    hidden = torch.randn(1, 3, 5)
    expected = torch.nn.functional.cross_entropy(hidden[0, 1, [0, 2]].unsqueeze(0), torch.tensor([1]))
    assert choice_loss(hidden, choice_batch(), scores_by_index).item() == pytest.approx(expected.item(), rel=1e-6)
    shifted = torch.nn.functional.cross_entropy((hidden[0, 1, [0, 2]] + torch.tensor([1.0, 0.0])).unsqueeze(0),
                                                torch.tensor([1]))
    assert choice_loss(hidden, choice_batch((1.0, 0.0, 0.0)), scores_by_index).item() == pytest.approx(shifted.item(),
                                                                                                      rel=1e-6)
    none = {**choice_batch(), "choice_mask": torch.tensor([[False, False]])}
    assert choice_loss(hidden, none, scores_by_index).item() == 0.0


def test_total_is_sixty_forty():
    outputs = {"robot_logits": LOGITS, "card_logits": LOGITS, "hidden_states": torch.randn(1, 3, 5)}
    losses = stage3_loss(outputs, choice_batch(), None, scores_by_index)
    selection = 1.5 * focal_loss(LOGITS, TARGETS)
    assert losses["selection_loss"].item() == pytest.approx(selection.item(), rel=1e-6)
    assert losses["reasoning_loss"].item() > 0
    assert losses["loss"].item() == pytest.approx(0.6 * selection.item() + 0.4 * losses["reasoning_loss"].item(), rel=1e-6)


def test_scene_loss_counts_only_rows_that_showed_an_image():
    outputs = {"robot_logits": LOGITS, "card_logits": LOGITS, "hidden_states": torch.randn(1, 3, 5),
               "scene_logits": torch.tensor([[2.0, -1.0]])}
    plain = stage3_loss(outputs, choice_batch(), None, scores_by_index)
    scenes = {"scene_targets": torch.tensor([[1.0, 0.0]])}
    hidden = stage3_loss(outputs, {**choice_batch(), **scenes, "has_image": torch.tensor([False])}, None, scores_by_index)
    shown = stage3_loss(outputs, {**choice_batch(), **scenes, "has_image": torch.tensor([True])}, None, scores_by_index)
    assert "scene_loss" not in plain and "scene_loss" not in hidden and hidden["loss"] == plain["loss"]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]))
    assert shown["scene_loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert shown["loss"].item() == pytest.approx(plain["loss"].item() + 0.2 * expected.item(), rel=1e-6)
