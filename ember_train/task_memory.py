"""The robot head's task memory: the sentence embeddings of the tasks it is trained on and their robots, set by training.

The memory is part of the model (buffers of `RobotHead`, saved with the weights) because inference
needs it: a task's cosine to its nearest training task decides how much the trained MLP or the
capability cards score it, and the robots of the nearest training tasks vote (see
ember_core/model/heads.py). Only training knows which tasks those are.
"""
from __future__ import annotations

import numpy as np
import torch

from ember_core.model.vlm import EmberVLM
from ember_core.processor import EmberProcessor


@torch.no_grad()
def remember_tasks(model: EmberVLM, processor: EmberProcessor, tasks: list[str], robots: np.ndarray | None = None,
                   batch_size: int = 64) -> None:
    """Store the sentence embeddings of `tasks` in the head (and those by the new-robot encoder, where the model
    has one), with their robots (len(tasks), fleet size), 0/1, when given; a no-op without a sentence encoder."""
    if model.text_encoder is None or not tasks:
        return
    encoders = [model.text_encoder, *([model.new_robot_encoder] if model.new_robot_encoder is not None else [])]
    device, training = model.no_image.device, model.text_encoder.training
    model.text_encoder.eval()
    embeddings = [[] for _ in encoders]
    for start in range(0, len(tasks), batch_size):
        encoded = processor.encode_tasks(tasks[start:start + batch_size])
        for encoder, parts in zip(encoders, embeddings):
            parts.append(encoder(**{key: value.to(device) for key, value in encoded.items()}))
    model.text_encoder.train(training)
    memories = [torch.cat(parts) for parts in embeddings]
    model.robot_head.set_task_memory(memories[0], None if robots is None else torch.as_tensor(robots), *memories[1:])
