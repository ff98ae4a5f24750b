"""A scene head fitted as a linear probe on a trained model's frozen visual tokens (pooled).

Stage 3 can train a scene head jointly (presets with `scene_tags`), but that also moves the robot
scores. The probe adds one to a finished model without changing anything else: the robot logits,
and so every recorded metric, stay exactly as they were.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ember_core.model.vlm import EmberVLM
from ember_core.processor import EmberProcessor
from ember_core.scenes import COARSE_SCENE_TAGS, render_scene, scene_tags
from ember_train.data import TaskRecord


def _features(model: EmberVLM, processor: EmberProcessor, records: Sequence[TaskRecord]) -> torch.Tensor:
    """(R, H): the mean visual token of each record's rendered scene, from the frozen vision part."""
    size = processor.config.image_size
    pixels = torch.stack([processor.pixels(render_scene(record.task, size)) for record in records])
    with torch.no_grad():
        return torch.cat([model.vision(chunk).mean(1) for chunk in pixels.split(64)])


def _targets(records: Sequence[TaskRecord], tags: Sequence[str]) -> torch.Tensor:
    return torch.tensor([[float(tag in scene_tags(record.task)) for tag in tags] for record in records])


def fit_scene_head(model: EmberVLM, processor: EmberProcessor, train: Sequence[TaskRecord],
                   check: Sequence[TaskRecord], tags: Sequence[str] = COARSE_SCENE_TAGS, steps: int = 500,
                   seed: int = 0) -> dict[str, float]:
    """Give `model` a scene head fitted on `train` (full-batch AdamW on binary cross-entropy).

    Returns the per-tag accuracy on `check` (records the probe never saw), and its mean.
    """
    torch.manual_seed(seed)
    model.eval()
    model.config.scene_tags = list(tags)
    model.scene_head = nn.Linear(model.no_image.numel(), len(tags))
    features, targets = _features(model, processor, train), _targets(train, tags)
    optimizer = torch.optim.AdamW(model.scene_head.parameters(), lr=0.01)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(model.scene_head(features), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        seen = model.scene_head(_features(model, processor, check)) > 0
    correct = (seen == _targets(check, tags).bool()).float().mean(0)
    accuracy = {f"scene_{tag}_accuracy": float(value) for tag, value in zip(tags, correct)}
    return {**accuracy, "scene_accuracy": float(correct.mean())}
