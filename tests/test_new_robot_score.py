"""A robot without a trained MLP row (added to the fleet after training) is scored from its card classifier's
log-odds, standardised over the training tasks (ember_core/model/heads.py, `RobotHead.new_robot_logits`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ember_core.fields import FieldError
from ember_core.model.config import preset
from ember_core.model.heads import RobotHead
from ember_core.pretrained import build_model


def log_odds(scores: np.ndarray) -> np.ndarray:
    """Each robot's softmax probability as log-odds, one robot at a time."""
    out = np.zeros_like(scores)
    for i in range(scores.shape[1]):
        others = np.delete(scores, i, axis=1)
        out[:, i] = scores[:, i] - np.log(np.exp(others).sum(1))
    return out


def expected(task: np.ndarray, memory: np.ndarray, weight: np.ndarray, bias: np.ndarray, scale: float,
             offset: float) -> np.ndarray:
    """The module docstring's formula: z = (log-odds - their mean over the memory) / their spread over it."""
    task = task / np.linalg.norm(task, axis=1, keepdims=True)
    background = log_odds(memory @ weight.T + bias)
    z = (log_odds(task @ weight.T + bias) - background.mean(0)) / background.std(0)
    return scale * z + offset


@pytest.fixture
def head_inputs():
    generator = torch.Generator().manual_seed(0)
    memory = F.normalize(torch.randn(9, 6, generator=generator), dim=-1)
    task = 3.0 * torch.randn(2, 6, generator=generator)  # the head normalises the task embedding itself
    cards = F.normalize(torch.randn(6, 6, generator=generator), dim=-1)
    classifier = (torch.randn(4, 6, generator=generator), torch.randn(4, generator=generator))
    return memory, (torch.randn(2, 8, generator=generator), cards, task, torch.tensor([0, 1, 2, 3, 3, 3]), classifier)


def test_a_new_robot_gets_its_standardised_card_log_odds_and_the_trained_robots_keep_theirs(head_inputs):
    memory, (state, cards, task, owner, classifier) = head_inputs
    head = RobotHead(8, 4, text_dim=6, new_robot=(0.7, -1.7)).eval()
    head.set_task_memory(memory, torch.ones(9, 4))
    with torch.no_grad():
        trained = head(state, cards, task, owner, classifier)["robot_logits"]
        head.known[3] = False
        out = head(state, cards, task, owner, classifier)
    want = expected(task.numpy(), memory.numpy(), classifier[0].numpy(), classifier[1].numpy(), 0.7, -1.7)
    assert np.allclose(out["robot_logits"][:, 3].numpy(), want[:, 3], atol=1e-5)
    assert not torch.allclose(out["robot_logits"][:, 3], out["card_logits"][:, 3])
    assert torch.equal(out["robot_logits"][:, :3], trained[:, :3])


def test_without_a_task_memory_or_a_sentence_encoder_a_new_robot_keeps_its_card_score(head_inputs):
    _, (state, cards, task, owner, classifier) = head_inputs
    head = RobotHead(8, 4, text_dim=6).eval()  # an untrained model: nothing to standardise against
    head.known[3] = False
    assert head.new_robot_logits(task, classifier) is None
    with torch.no_grad():
        out = head(state, cards, task, owner, classifier)
    assert torch.equal(out["robot_logits"][:, 3], out["card_logits"][:, 3])
    plain = RobotHead(8, 4).eval()
    plain.known[3] = False
    assert plain.new_robot_logits(None, None) is None
    with torch.no_grad():
        out = plain(state, torch.randn(4, 8))
    assert torch.equal(out["robot_logits"][:, 3], out["card_logits"][:, 3])


def test_the_config_sets_the_new_robot_score_and_refuses_a_scale_that_is_not_positive(fleet):
    model, _ = build_model(preset("tiny", text_encoder="minilm", new_robot_scale=1.5, new_robot_bias=-0.5), fleet)
    assert (model.robot_head.new_robot_scale, model.robot_head.new_robot_bias) == (1.5, -0.5)
    with pytest.raises(FieldError, match="new_robot_scale"):
        preset("tiny", new_robot_scale=0.0)
