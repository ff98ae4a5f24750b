"""Stage 3 losses: focal loss with label smoothing and class weights for robots, LM loss for reasoning.

Total = 0.6 * selection + 0.4 * reasoning, the reference implementation's split. The selection part is the focal loss
of the blended robot logits plus half the focal loss of the card-only logits, so that the card
scorer that rates robots added after training is trained as a scorer in its own right. Models
with a scene head add a binary cross-entropy on the scene tags of the rows that show an image
(tags from the task text, the same words the training scenes are drawn from).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ember_core.processor import IGNORE_INDEX

SELECTION_WEIGHT = 0.6
REASONING_WEIGHT = 0.4
CARD_AUX_WEIGHT = 0.5
SCENE_WEIGHT = 0.2


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, label_smoothing: float = 0.1,
               class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-label focal loss (Lin et al. 2017) on per-robot sigmoids.

    Targets are smoothed towards 0.5 (y * (1 - s) + s / 2); the focusing factor (1 - p_t)^gamma uses
    the hard target, so well-classified robots weigh less; `class_weights` (N,) scales each robot's
    column. With gamma=0, s=0 and no weights this is plain binary cross-entropy.
    """
    targets = targets.to(logits.dtype)
    smoothed = targets * (1 - label_smoothing) + label_smoothing / 2
    bce = F.binary_cross_entropy_with_logits(logits, smoothed, reduction="none")
    probability = torch.sigmoid(logits)
    p_true = probability * targets + (1 - probability) * (1 - targets)
    loss = (1 - p_true) ** gamma * bce
    if class_weights is not None:
        loss = loss * class_weights.to(loss.dtype)
    return loss.mean()


def class_weights(targets: torch.Tensor, clip: float = 10.0) -> torch.Tensor:
    """Per-robot weights from train-set frequencies: mean positive count / robot's count, clipped.

    A robot that is suitable for few tasks (the Humanoid in the public data: 19 of 250) gets a
    larger weight; a robot never positive in training gets `clip` rather than infinity.
    """
    counts = targets.float().sum(0)
    weights = counts.mean() / counts.clamp(min=1e-6)
    return weights.clamp(max=clip)


def reasoning_loss(hidden: torch.Tensor, labels: torch.Tensor,
                   token_logits: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy on the reasoning and plan tokens only (labels -100 elsewhere).

    Vocabulary logits are computed only at the positions that predict a labelled token.
    """
    targets = labels[:, 1:]
    learned = targets != IGNORE_INDEX
    if not bool(learned.any()):
        return hidden.sum() * 0.0
    logits = token_logits(hidden[:, :-1][learned])
    return F.cross_entropy(logits.float(), targets[learned])


def stage3_loss(outputs: dict[str, torch.Tensor], targets: torch.Tensor, labels: torch.Tensor,
                weights: torch.Tensor | None, token_logits: Callable[[torch.Tensor], torch.Tensor],
                scene_targets: torch.Tensor | None = None, has_image: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The total loss and its parts, from EmberVLM outputs, robot targets (B, N), LM labels (B, T) and,
    for a scene head, scene-tag targets (B, S) with has_image (B,) marking the rows that showed one."""
    selection = focal_loss(outputs["robot_logits"].float(), targets, class_weights=weights)
    selection = selection + CARD_AUX_WEIGHT * focal_loss(outputs["card_logits"].float(), targets, class_weights=weights)
    reasoning = reasoning_loss(outputs["hidden_states"], labels, token_logits)
    total = SELECTION_WEIGHT * selection + REASONING_WEIGHT * reasoning
    parts = {"selection_loss": selection.detach(), "reasoning_loss": reasoning.detach()}
    if "scene_logits" in outputs and scene_targets is not None and has_image is not None and bool(has_image.any()):
        scene = F.binary_cross_entropy_with_logits(outputs["scene_logits"][has_image].float(), scene_targets[has_image])
        total = total + SCENE_WEIGHT * scene
        parts["scene_loss"] = scene.detach()
    return {"loss": total, **parts}
