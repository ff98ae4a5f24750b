"""What each stage trains: a learning-rate multiplier per part of the model (0 freezes the part), and the
optimizer's parameter groups built from them (nanoVLM's per-component learning rates).

Every parameter of an EmberVLM belongs to one part: `vision` (the RepViT backbone), `projector` (the
visual tokens' projection into the LM and the learned no-image vector), `language_model`,
`explanation` (the explanation adapter), `text_encoder` (a sentence encoder, in presets that have
one) and `head` (the robot head and the scene head). A part's learning rate is `--learning_rate`
times its multiplier. A part the model config freezes (a frozen pretrained text encoder is not even
stored in checkpoints) stays frozen whatever its multiplier.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from ember_core.model.vlm import EmberVLM

log = logging.getLogger("ember.train")

PARTS = ("vision", "projector", "language_model", "explanation", "text_encoder", "head")
# Stage 1 aligns images and text (the robot head has nothing to learn yet); Stage 2 tunes the LM on
# conversations over the aligned vision encoder; Stage 3 trains everything it uses, the small robot
# head (new in the stage) at 10x.
STAGE_PART_LR: dict[int, dict[str, float]] = {
    1: {"vision": 1.0, "projector": 1.0, "language_model": 1.0, "explanation": 0.0, "text_encoder": 0.0, "head": 0.0},
    2: {"vision": 0.0, "projector": 1.0, "language_model": 1.0, "explanation": 0.0, "text_encoder": 0.0, "head": 0.0},
    3: {"vision": 1.0, "projector": 1.0, "language_model": 1.0, "explanation": 1.0, "text_encoder": 0.0, "head": 10.0},
}


@dataclass(frozen=True)
class PartPlan:
    """One part in a stage: its multiplier, its parameters, and those that train."""

    part: str
    multiplier: float
    parameters: int
    trainable: int


def part_multipliers(stage: int, overrides: str | None) -> dict[str, float]:
    """The stage's multiplier of every part, with `overrides` ("vision=0,head=20", as --stage{N}_part_lr) applied."""
    multipliers = dict(STAGE_PART_LR[stage])
    flag = f"--stage{stage}_part_lr"
    for item in filter(None, (overrides or "").replace(" ", "").split(",")):
        part, _, value = item.partition("=")
        if part not in multipliers:
            raise ValueError(f"{flag}: unknown part {part!r}; the parts are {', '.join(PARTS)}")
        try:
            multipliers[part] = float(value)
        except ValueError:
            raise ValueError(f"{flag}: {item!r} needs a number after '=', e.g. {part}=0") from None
        if not multipliers[part] >= 0:
            raise ValueError(f"{flag}: {item!r}: a multiplier is 0 (frozen) or more")
    return multipliers


def part_modules(model: EmberVLM) -> dict[str, list[nn.Module | nn.Parameter]]:
    """The modules and loose parameters of each part (a part the model lacks has none)."""
    return {
        "vision": [model.vision.backbone],
        "projector": [model.vision.projector, model.no_image],
        "language_model": [model.language_model],
        "explanation": [model.explanation_adapter],
        # with the new-robot encoder's own layers, tuned on the sentence encoder and frozen with it
        "text_encoder": ([model.text_encoder] if model.text_encoder is not None else [])
        + ([model.new_robot_encoder.tuned] if model.new_robot_encoder is not None else []),
        "head": [model.robot_head] + ([model.scene_head] if model.scene_head is not None else []),
    }


def apply_parts(model: EmberVLM, multipliers: dict[str, float], learning_rate: float,
                weight_decay: float) -> tuple[list[dict], list[PartPlan]]:
    """Freeze the parts with multiplier 0 (and those the config freezes), unfreeze the rest; the optimizer's
    parameter groups (one per trained part) and what each part does in this stage."""
    groups, plans = [], []
    for part, members in part_modules(model).items():
        parameters = list(dict.fromkeys(p for member in members for p in _parameters(member)))
        trains = multipliers[part] > 0 and not _frozen_by_config(model, part)
        if multipliers[part] > 0 and not trains:
            log.warning("The model config freezes the %s (its weights come from its own source); it stays frozen "
                        "although its learning-rate multiplier is %g", part.replace("_", " "), multipliers[part])
        for parameter in parameters:
            parameter.requires_grad_(trains)
        if part == "vision":
            model.vision.set_frozen(not trains)  # also keeps a frozen backbone's BatchNorm statistics still
        if trains and parameters:
            groups.append({"params": parameters, "lr": learning_rate * multipliers[part], "weight_decay": weight_decay,
                           "name": part})
        count = sum(p.numel() for p in parameters)
        plans.append(PartPlan(part, multipliers[part] if trains else 0.0, count, count if trains else 0))
    return groups, plans


def log_parts(stage: int, plans: list[PartPlan], learning_rate: float) -> None:
    """The table of what Stage `stage` trains, at its start."""
    log.info("Stage %d trains (learning rate %g x multiplier; 0 = frozen):", stage, learning_rate)
    log.info("  %-15s %10s %14s %14s", "part", "multiplier", "trainable", "parameters")
    for plan in plans:
        if plan.parameters:
            log.info("  %-15s %10g %14s %14s", plan.part, plan.multiplier, f"{plan.trainable:,}", f"{plan.parameters:,}")
    log.info("  %-15s %10s %14s %14s", "total", "", f"{sum(p.trainable for p in plans):,}",
             f"{sum(p.parameters for p in plans):,}")


def _parameters(member: nn.Module | nn.Parameter) -> list[nn.Parameter]:
    return [member] if isinstance(member, nn.Parameter) else list(member.parameters())


def _frozen_by_config(model: EmberVLM, part: str) -> bool:
    if part == "vision":
        return model.config.freeze_vision
    return part == "text_encoder" and model.text_encoder is not None and model.text_encoder.frozen
