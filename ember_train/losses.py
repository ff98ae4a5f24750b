"""Stage 3 losses: focal loss with label smoothing and class weights for robots, choice loss for the explanation.

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


def choice_loss(hidden: torch.Tensor, batch: dict[str, torch.Tensor],
                token_scores: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the explanation's decision points: at each, the target among its candidates only,
    scored as the decoder scores them (`EmberVLM.token_scores`); 0 for a batch without any."""
    mask = batch["choice_mask"]
    if not bool(mask.any()):
        return hidden.sum() * 0.0
    rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(1).expand_as(mask)
    states = hidden[rows[mask], batch["choice_positions"][mask]]  # (M, H)
    scores = token_scores(states, batch["choice_candidates"][mask], batch["choice_relevance"][mask]).float()  # (M, K)
    scores = scores.masked_fill(~batch["candidate_mask"][mask], float("-inf"))
    return F.cross_entropy(scores, batch["choice_targets"][mask])


def stage3_loss(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], weights: torch.Tensor | None,
                token_scores: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """The total loss and its parts, from EmberVLM outputs and a training batch: robot `targets` (B, N),
    the explanation's decision points, and for a scene head `scene_targets` (B, S) with `has_image` (B,)."""
    targets, scene_targets, has_image = batch["targets"], batch.get("scene_targets"), batch.get("has_image")
    selection = focal_loss(outputs["robot_logits"].float(), targets, class_weights=weights)
    selection = selection + CARD_AUX_WEIGHT * focal_loss(outputs["card_logits"].float(), targets, class_weights=weights)
    reasoning = choice_loss(outputs["hidden_states"], batch, token_scores)
    total = SELECTION_WEIGHT * selection + REASONING_WEIGHT * reasoning
    parts = {"selection_loss": selection.detach(), "reasoning_loss": reasoning.detach()}
    if "scene_logits" in outputs and scene_targets is not None and has_image is not None and bool(has_image.any()):
        scene = F.binary_cross_entropy_with_logits(outputs["scene_logits"][has_image].float(), scene_targets[has_image])
        total = total + SCENE_WEIGHT * scene
        parts["scene_loss"] = scene.detach()
    return {"loss": total, **parts}
