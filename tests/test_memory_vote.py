"""The task memory's vote: the robots of the training tasks nearest to a request join the trained robots' logits
at inference (ember_core/model/heads.py), survive a save, move with the fleet, and stay out of training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from conftest import REPO
from ember_core import load_fleet
from ember_core.model.config import preset
from ember_core.model.heads import VOTE_FLOOR, MemoryVote, RobotHead
from ember_core.pretrained import build_model, load_pretrained, save_pretrained
from ember_train.task_memory import remember_tasks

TASKS = ["Inspect the hull of the oil tanker for corrosion", "Deliver parcels across the city",
         "Survey the forest for fires"]
# Which of the five robots (fleet order) suit each of TASKS.
ROBOTS = np.array([[0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [1, 0, 0, 0, 1]], dtype=np.float32)


def expected_vote(task: np.ndarray, memory: np.ndarray, robots: np.ndarray, vote: MemoryVote,
                  sharpness: float) -> np.ndarray:
    """The vote of the module docstring, written out one request and one robot at a time."""
    out = np.zeros((len(task), robots.shape[1]))
    for b, query in enumerate(task):
        cosines = memory @ query
        nearest = np.argsort(-cosines, kind="stable")[: vote.neighbours]
        weights = np.exp((cosines[nearest] - cosines[nearest].max()) / vote.temperature)
        weights /= weights.sum()
        swayed = 1.0 / (1.0 + math.exp(-sharpness * (cosines[nearest[0]] - vote.threshold)))
        for i in range(robots.shape[1]):
            share = min(max(float(weights @ robots[nearest, i]), VOTE_FLOOR), 1 - VOTE_FLOOR)
            out[b, i] = vote.gain * swayed * math.log(share / (1 - share))
    return out


def unit(rows: torch.Tensor) -> torch.Tensor:
    return F.normalize(rows, dim=-1)


def test_the_vote_is_the_written_out_formula():
    generator = torch.Generator().manual_seed(0)
    vote = MemoryVote(neighbours=3, temperature=0.1, gain=1.5, threshold=0.5)
    head = RobotHead(8, 4, text_dim=6, memory_vote=vote).eval()
    memory = unit(torch.randn(7, 6, generator=generator))
    robots = (torch.rand(7, 4, generator=generator) > 0.5).float()
    head.set_task_memory(memory, robots)
    tasks = unit(torch.cat([memory[:2] + 0.05 * torch.randn(2, 6, generator=generator),
                            torch.randn(2, 6, generator=generator)]))
    got = head.vote(tasks)
    want = expected_vote(tasks.numpy(), memory.numpy(), robots.numpy(), vote, head.memory_sharpness)
    assert np.allclose(got.numpy(), want, atol=1e-5)
    assert got[:2].abs().max() > 1.0  # near a remembered task: the vote moves logits by more than one
    assert got.abs().max() <= vote.gain * math.log((1 - VOTE_FLOOR) / VOTE_FLOOR) + 1e-5


def test_no_vote_in_training_without_remembered_robots_or_with_gain_0():
    memory, robots, task = unit(torch.randn(3, 6)), torch.ones(3, 4), unit(torch.randn(2, 6))
    head = RobotHead(8, 4, text_dim=6)
    head.set_task_memory(memory, robots)
    assert head.train().vote(task) is None  # every training task would find itself
    assert head.eval().vote(task) is not None
    with head.vote_paused():  # how Stage 3 validates, to pick the best epoch
        assert head.vote(task) is None
    assert head.vote(task) is not None and head.memory_vote == MemoryVote()
    head.set_task_memory(memory)
    assert head.vote(task) is None
    off = RobotHead(8, 4, text_dim=6, memory_vote=MemoryVote(gain=0.0)).eval()
    off.set_task_memory(memory, robots)
    assert off.vote(task) is None
    with pytest.raises(ValueError, match=r"memory robots of shape \[3, 5\] for 3 tasks and 4 robots"):
        head.set_task_memory(memory, torch.ones(3, 5))


def test_the_vote_joins_the_logits_of_trained_robots_only():
    torch.manual_seed(0)
    head = RobotHead(8, 4, text_dim=6).eval()
    head.known[3] = False  # e.g. a robot added after training
    memory = unit(torch.randn(3, 6))
    head.set_task_memory(memory, torch.ones(3, 4))
    state, task, cards = torch.randn(2, 8), memory[:2], unit(torch.randn(5, 6))
    classifier = (torch.randn(4, 6), torch.randn(4))
    owner = torch.tensor([0, 1, 2, 3, 3])
    with torch.no_grad():
        out = head(state, cards, task, owner, classifier)
        vote = head.vote(task)
        gate = head.familiarity(task).unsqueeze(1)
    blended = gate * out["mlp_logits"] + (1 - gate) * out["card_logits"]
    assert torch.allclose(out["robot_logits"][:, :3], blended[:, :3] + vote[:, :3], atol=1e-5)
    assert torch.equal(out["robot_logits"][:, 3], head.new_robot_logits(task, classifier)[:, 3])
    assert torch.equal(out["familiarity"], gate[:, 0])  # the Selector's cue for the part scorer (part_scorer.task_logits)


@pytest.fixture(scope="module")
def remembered(fleet):
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny", text_encoder="minilm"), fleet)
    remember_tasks(model, processor, TASKS, ROBOTS)
    return model.eval(), processor


def logits(model, processor, tasks: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return model(**processor.collate([processor.features(task) for task in tasks]))["robot_logits"]


def vote_in_logits(model, processor, tasks: list[str]) -> torch.Tensor:
    """What the vote adds to the logits of `tasks`: the logits less those with the vote paused."""
    voted = logits(model, processor, tasks)
    with model.robot_head.vote_paused():
        return voted - logits(model, processor, tasks)


def test_a_remembered_task_leans_to_its_robots_and_the_vote_survives_a_save(remembered, tmp_path):
    model, processor = remembered
    assert torch.equal(model.robot_head.memory_robots, torch.from_numpy(ROBOTS))
    vote = vote_in_logits(model, processor, TASKS)
    assert torch.equal(vote > 0, torch.from_numpy(ROBOTS) > 0)  # each task's own robots, and only they, gain
    assert vote.abs().min() > 1.0
    loaded, loaded_processor = load_pretrained(save_pretrained(model, processor, tmp_path / "m"))
    assert torch.equal(loaded.robot_head.memory_robots, model.robot_head.memory_robots)
    assert torch.allclose(logits(loaded, loaded_processor, TASKS), logits(model, processor, TASKS), atol=1e-4)


def test_a_checkpoint_saved_without_memory_robots_loads_without_a_vote(remembered, tmp_path):
    model, processor = remembered
    path = save_pretrained(model, processor, tmp_path / "m")
    weights = load_file(str(path / "model.safetensors"))
    del weights["robot_head.memory_robots"]  # as the checkpoints saved before the vote
    save_file(weights, str(path / "model.safetensors"))
    loaded, loaded_processor = load_pretrained(path)
    assert loaded.robot_head.memory_robots.numel() == 0 and loaded.robot_head.task_memory.shape == (3, 384)
    batch = loaded_processor.collate([loaded_processor.features(task) for task in TASKS])
    with torch.no_grad():
        out = loaded(**batch)
        gate = loaded.robot_head.familiarity(out["task_embedding"]).unsqueeze(1)
    assert torch.allclose(out["robot_logits"], gate * out["mlp_logits"] + (1 - gate) * out["card_logits"], atol=1e-5)


def test_the_memory_robots_move_with_the_fleet_by_id(remembered, tmp_path):
    model, processor = remembered
    path = save_pretrained(model, processor, tmp_path / "m")
    six = load_fleet(REPO / "tests" / "data" / "robots_with_snake.yaml")  # the five, then the snake
    loaded, loaded_processor = load_pretrained(path, fleet=six)
    assert torch.equal(loaded.robot_head.memory_robots[:, :5], model.robot_head.memory_robots)
    assert not loaded.robot_head.memory_robots[:, 5].any()
    moved = vote_in_logits(loaded, loaded_processor, TASKS)
    assert torch.allclose(moved[:, :5], vote_in_logits(model, processor, TASKS), atol=1e-4)
    assert torch.equal(moved[:, 5], torch.zeros(len(TASKS)))  # the snake is not voted for
