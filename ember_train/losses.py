"""Stage 3 losses: focal loss with label smoothing and class weights for robots, choice loss for the explanation.

Total = 0.6 * selection + 0.4 * reasoning, the reference implementation's split. The selection part is the focal loss
of the blended robot logits plus half the focal loss of the card-only logits, so that the card
scorer that rates robots added after training is trained as a scorer in its own right. Models
with a scene head add a binary cross-entropy on the scene tags of the rows that show an image
(tags from the task text, the same words the training scenes are drawn from).

Each term is a mean over its own items: tasks (selection), decision points (reasoning), shown images
(scene). `stage3_counts` counts them in a batch and `stage3_loss` also returns each term's weighted sum
over them, so that the trainer can divide by the items of a whole update (`ember_train.update_loss`).
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F


SELECTION_WEIGHT = 0.6
REASONING_WEIGHT = 0.4
CARD_AUX_WEIGHT = 0.5
SCENE_WEIGHT = 0.2
STAGE3_TERMS = ("selection", "reasoning", "scene")


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, label_smoothing: float = 0.1,
               class_weights: torch.Tensor | None = None, reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """Multi-label focal loss (Lin et al. 2017) on per-robot sigmoids.

    Targets are smoothed towards 0.5 (y * (1 - s) + s / 2); the focusing factor (1 - p_t)^gamma uses
    the hard target, so well-classified robots weigh less; `class_weights` (N,) scales each robot's
    column. With gamma=0, s=0 and no weights this is plain binary cross-entropy. `reduction` "sum" adds the
    (B, N) elements up instead of averaging them.
    """
    targets = targets.to(logits.dtype)
    smoothed = targets * (1 - label_smoothing) + label_smoothing / 2
    bce = F.binary_cross_entropy_with_logits(logits, smoothed, reduction="none")
    probability = torch.sigmoid(logits)
    p_true = probability * targets + (1 - probability) * (1 - targets)
    loss = (1 - p_true) ** gamma * bce
    if class_weights is not None:
        loss = loss * class_weights.to(loss.dtype)
    return loss.sum() if reduction == "sum" else loss.mean()


def class_weights(targets: torch.Tensor, clip: float = 10.0) -> torch.Tensor:
    """Per-robot weights from train-set frequencies: mean positive count / robot's count, clipped.

    A robot that is suitable for few tasks (the Humanoid in the public data: 19 of 250) gets a
    larger weight; a robot never positive in training gets `clip` rather than infinity.
    """
    counts = targets.float().sum(0)
    weights = counts.mean() / counts.clamp(min=1e-6)
    return weights.clamp(max=clip)


def choice_loss(hidden: torch.Tensor, batch: dict[str, torch.Tensor],
                token_scores: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """Cross-entropy of the explanation's decision points: at each, the target among its candidates only,
    scored as the decoder scores them (`EmberVLM.token_scores`), averaged (or with "sum", added up) over the
    decision points; 0 for a batch without any."""
    mask = batch["choice_mask"]
    if not bool(mask.any()):
        return hidden.sum() * 0.0
    rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(1).expand_as(mask)
    states = hidden[rows[mask], batch["choice_positions"][mask]]  # (M, H)
    scores = token_scores(states, batch["choice_candidates"][mask], batch["choice_relevance"][mask]).float()  # (M, K)
    scores = scores.masked_fill(~batch["candidate_mask"][mask], float("-inf"))
    return F.cross_entropy(scores, batch["choice_targets"][mask], reduction=reduction)


def stage3_counts(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The items each term of STAGE3_TERMS averages over in `batch`: its tasks, its decision points, and (with
    scene targets) its rows that show an image."""
    targets, has_image = batch["targets"], batch.get("has_image")
    shown = has_image.sum() if has_image is not None and "scene_targets" in batch else targets.new_zeros(())
    return {"selection": targets.new_tensor(float(targets.shape[0])), "reasoning": batch["choice_mask"].sum().float(),
            "scene": shown.float()}


def stage3_loss(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], weights: torch.Tensor | None,
                token_scores: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """The total loss and its parts, from EmberVLM outputs and a training batch: robot `targets` (B, N),
    the explanation's decision points, and for a scene head `scene_targets` (B, S) with `has_image` (B,).

    `sums` holds each term's weighted sum over its items (`stage3_counts`): the total is the sum of each
    divided by its count."""
    targets, scene_targets, has_image = batch["targets"], batch.get("scene_targets"), batch.get("has_image")
    counts = {name: count.clamp(min=1) for name, count in stage3_counts(batch).items()}
    robots = targets.shape[1]
    selection = (focal_loss(outputs["robot_logits"].float(), targets, class_weights=weights, reduction="sum")
                 + CARD_AUX_WEIGHT * focal_loss(outputs["card_logits"].float(), targets, class_weights=weights,
                                                reduction="sum")) / robots
    reasoning = choice_loss(outputs["hidden_states"], batch, token_scores, reduction="sum")
    scene = selection.new_zeros(())
    shows_scenes = ("scene_logits" in outputs and scene_targets is not None and has_image is not None
                    and bool(has_image.any()))
    if shows_scenes:
        scene = F.binary_cross_entropy_with_logits(outputs["scene_logits"][has_image].float(), scene_targets[has_image],
                                                   reduction="sum") / scene_targets.shape[1]
    sums = {"selection": SELECTION_WEIGHT * selection, "reasoning": REASONING_WEIGHT * reasoning,
            "scene": SCENE_WEIGHT * scene}
    total = sum(sums[name] / counts[name] for name in STAGE3_TERMS)
    parts = {"selection_loss": (selection / counts["selection"]).detach(),
             "reasoning_loss": (reasoning / counts["reasoning"]).detach()}
    if shows_scenes:
        parts["scene_loss"] = (scene / counts["scene"]).detach()
    return {"loss": total, **parts, "sums": sums}
