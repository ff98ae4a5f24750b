"""Tune the new-robot encoder (ember_core.model.new_robot_encoder) on labelled job steps and robot cards.

Each step of ember_core/assets/part_clauses.jsonl names the robots of the default fleet that could do it
alone. A robot's score for a step is a soft maximum of the step's cosines to the robot's card phrases
(logsumexp over them at TEMPERATURE), and the loss is the cross-entropy of the softmax over robots
against the step's robots (shared equally). Only the top layers learn; each step of the optimiser sees a
batch of steps and up to PHRASES_PER_ROBOT phrases of every robot, all embedded with gradients, so the
phrases move with the tasks as they will at inference.

Tuned on the five robots alone, the encoder learns the verbs that tell those five apart and weighs a
request's verb over its object: a fleet of specialised robots then goes wrong (tests/test_fleet_size.py).
So each step of the optimiser also sees a batch of the steps of 80 robots of other kinds
(robot_kind_cards.jsonl, robot_kind_steps.jsonl: specialised robots, several sharing a verb and told
apart only by the object or the place), scored against KIND_ROBOTS of them. The settings were chosen on
the development sets (README, "The model"); one epoch takes about 9 min on 2 CPU cores with four layers.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from ember_core.fleet import Fleet
from ember_core.model.new_robot_encoder import NewRobotEncoder
from ember_core.model.text_encoder import TextEncoder
from ember_core.part_scorer import ASSETS, PART_SOURCES, read_clauses
from ember_core.prompt import card_phrases
from ember_core.robot import RobotType

TEMPERATURE = 0.05
PHRASES_PER_ROBOT = 16
# Robots of other kinds: how many a batch of their steps is drawn from and scored against, and the phrases drawn
# of each.
KIND_ROBOTS = 24
KIND_PHRASES_PER_ROBOT = 8
BATCH = 32
RobotGroup = tuple[list[RobotType], list[dict]]  # other robots and their labelled steps
WARMUP = 20
# What tools/fit_new_robot_encoder.py tunes the shipped encoder with (chosen on the development sets).
SHIPPED_SETTINGS = {"layers": 4, "epochs": 1, "learning_rate": 5e-5, "seed": 0, "kind_weight": 1.0}
# Robots of other kinds and their labelled steps (see the files' first lines), and every file the shipped encoder is
# tuned on.
KIND_CARDS_FILE = ASSETS / "robot_kind_cards.jsonl"
KIND_STEPS_FILE = ASSETS / "robot_kind_steps.jsonl"
NEW_ROBOT_SOURCES = (*PART_SOURCES, KIND_CARDS_FILE, KIND_STEPS_FILE)


def read_robot_kinds() -> RobotGroup:
    """The robots of KIND_CARDS_FILE and the steps of KIND_STEPS_FILE."""
    return [RobotType(**card) for card in read_clauses(KIND_CARDS_FILE)], read_clauses(KIND_STEPS_FILE)


def tune_new_robot_encoder(encoder: TextEncoder, fleet: Fleet, steps: list[dict], layers: int, epochs: int = 1,
                           learning_rate: float = 1e-4, seed: int = 0, kinds: RobotGroup | None = None,
                           kind_weight: float = 1.0) -> NewRobotEncoder:
    """A new-robot encoder over `encoder` whose top `layers` layers are tuned on `steps` ({"clause", "robots"};
    those with none of `fleet`'s robots are left out) against `fleet`'s card phrases, and, with `kinds` (robots
    of other kinds and their labelled steps), as much again on their steps against their phrases, weighted by
    `kind_weight`: each batch of those is drawn from the steps of KIND_ROBOTS robots picked at random and scored
    against them."""
    main = _group(list(fleet), steps)
    other = _group(*kinds) if kinds else None
    if not main[1] or any(not own for own in main[0]) or (other and (not other[1] or not all(other[0]))):
        raise ValueError("tuning needs steps labelled with the fleet's robots and a card phrase for every robot")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = NewRobotEncoder(encoder, layers)
    parameters = model.tunable()
    optimiser = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.01)
    total = max(1, epochs * (len(main[1]) // BATCH))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / WARMUP) * max(0.0, 1.0 - step / total))
    order = list(range(len(main[1])))
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, max(1, len(order) - BATCH + 1), BATCH):
            loss = _batch_loss(model, encoder, main, order[start:start + BATCH], range(len(main[0])),
                               PHRASES_PER_ROBOT, rng)
            if other:
                chosen = rng.sample(range(len(other[0])), min(KIND_ROBOTS, len(other[0])))
                candidates = np.flatnonzero(other[2][:, chosen].sum(1).numpy()).tolist()
                rows = rng.sample(candidates, min(BATCH, len(candidates)))
                robots = sorted(set(chosen) | set(np.flatnonzero(other[2][rows].sum(0).numpy()).tolist()))
                loss = loss + kind_weight * _batch_loss(model, encoder, other, rows, robots, KIND_PHRASES_PER_ROBOT, rng)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    for parameter in parameters:
        parameter.requires_grad_(False)
    return model.eval()


def _group(robots: list[RobotType], steps: list[dict]) -> tuple[list[list[str]], list[str], torch.Tensor]:
    """The robots' card phrases, and the texts and target rows of the steps with at least one of the robots."""
    ids = [robot.id for robot in robots]
    targets = np.array([[robot in step["robots"] for robot in ids] for step in steps], dtype=np.float32).reshape(
        len(steps), len(ids))
    keep = np.flatnonzero(targets.sum(1) > 0)
    return [card_phrases(robot) for robot in robots], [steps[i]["clause"] for i in keep], torch.from_numpy(targets[keep])


def _batch_loss(model: NewRobotEncoder, encoder: TextEncoder, group: tuple, rows: list[int], robots,
                per_robot: int, rng: random.Random) -> torch.Tensor:
    """The loss of the group's steps `rows` against its `robots` (every robot of those steps among them), with
    `per_robot` of each robot's phrases drawn at random."""
    phrases, texts, targets = group
    robots = list(robots)
    sampled = [(index, phrase) for index, robot in enumerate(robots)
               for phrase in rng.sample(phrases[robot], min(per_robot, len(phrases[robot])))]
    return _loss(model, encoder, [texts[i] for i in rows], targets[rows][:, robots], sampled, len(robots))


def _loss(model: NewRobotEncoder, encoder: TextEncoder, texts: list[str], targets: torch.Tensor,
          phrases: list[tuple[int, str]], robots: int) -> torch.Tensor:
    tasks = model(**encoder.tokenize(texts))
    cards = model(**encoder.tokenize([phrase for _, phrase in phrases]))
    owner = torch.tensor([robot for robot, _ in phrases])
    similarity = tasks @ cards.T / TEMPERATURE
    scores = torch.stack([torch.logsumexp(similarity[:, owner == robot], 1) for robot in range(robots)], 1)
    shares = targets / targets.sum(1, keepdim=True)
    return -(scores.log_softmax(1) * shares).sum(1).mean()

