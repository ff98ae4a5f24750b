"""Tune the new-robot encoder (ember_core.model.new_robot_encoder) on the labelled job steps and the fleet's cards.

Each step of ember_core/assets/part_clauses.jsonl names the robots of the default fleet that could do it
alone. A robot's score for a step is a soft maximum of the step's cosines to the robot's card phrases
(logsumexp over them at TEMPERATURE), and the loss is the cross-entropy of the softmax over robots
against the step's robots (shared equally). Only the top layers learn; each step of the optimiser sees a
batch of steps and up to PHRASES_PER_ROBOT phrases of every robot, all embedded with gradients, so the
phrases move with the tasks as they will at inference. The settings were chosen on the development sets
(README, "The model"); one epoch takes about 1.5 min on 2 CPU cores with two layers.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from ember_core.fleet import Fleet
from ember_core.model.new_robot_encoder import NewRobotEncoder
from ember_core.model.text_encoder import TextEncoder
from ember_core.prompt import card_phrases

TEMPERATURE = 0.05
PHRASES_PER_ROBOT = 16
BATCH = 32
WARMUP = 20
# What tools/fit_new_robot_encoder.py tunes the shipped encoder with (chosen on the development sets).
SHIPPED_SETTINGS = {"layers": 4, "epochs": 1, "learning_rate": 5e-5, "seed": 0}


def tune_new_robot_encoder(encoder: TextEncoder, fleet: Fleet, steps: list[dict], layers: int, epochs: int = 1,
                           learning_rate: float = 1e-4, seed: int = 0) -> NewRobotEncoder:
    """A new-robot encoder over `encoder` whose top `layers` layers are tuned on `steps` ({"clause", "robots"};
    those with none of `fleet`'s robots are left out) against `fleet`'s card phrases."""
    ids = fleet.ids
    targets = np.array([[robot in step["robots"] for robot in ids] for step in steps], dtype=np.float32)
    keep = np.flatnonzero(targets.sum(1) > 0)
    texts, targets = [steps[i]["clause"] for i in keep], torch.from_numpy(targets[keep])
    phrases = [card_phrases(robot) for robot in fleet]
    if not texts or any(not own for own in phrases):
        raise ValueError("tuning needs steps labelled with the fleet's robots and a card phrase for every robot")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = NewRobotEncoder(encoder, layers)
    parameters = model.tunable()
    optimiser = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.01)
    total = max(1, epochs * (len(texts) // BATCH))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / WARMUP) * max(0.0, 1.0 - step / total))
    order = list(range(len(texts)))
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, max(1, len(order) - BATCH + 1), BATCH):
            batch = order[start:start + BATCH]
            sampled = [(robot, phrase) for robot, own in enumerate(phrases)
                       for phrase in rng.sample(own, min(PHRASES_PER_ROBOT, len(own)))]
            loss = _loss(model, encoder, [texts[i] for i in batch], targets[batch], sampled, len(ids))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    for parameter in parameters:
        parameter.requires_grad_(False)
    return model.eval()


def _loss(model: NewRobotEncoder, encoder: TextEncoder, texts: list[str], targets: torch.Tensor,
          phrases: list[tuple[int, str]], robots: int) -> torch.Tensor:
    tasks = model(**encoder.tokenize(texts))
    cards = model(**encoder.tokenize([phrase for _, phrase in phrases]))
    owner = torch.tensor([robot for robot, _ in phrases])
    similarity = tasks @ cards.T / TEMPERATURE
    scores = torch.stack([torch.logsumexp(similarity[:, owner == robot], 1) for robot in range(robots)], 1)
    shares = targets / targets.sum(1, keepdim=True)
    return -(scores.log_softmax(1) * shares).sum(1).mean()

