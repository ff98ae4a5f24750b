"""Calibration: the map from the robot head's logits to the confidences users read.

A confidence is the probability that the robot is suitable for the task. For robot i with logit z_i
in a fleet whose other robots' best logit is max_{j != i} z_j:

    confidence_i = sigmoid(scale * z_i + margin * (z_i - max_{j != i} z_j) + bias)

With margin = bias = 0 this is temperature scaling (scale = 1 / T). The margin term is what makes the
top robot's confidence honest: a robot far ahead of the rest is more likely right than one that leads
by a hair, which a single temperature cannot express (it fits the many confident negatives and leaves
the top robot under-confident). scale > 0 and margin >= 0 keep the ranking of the logits: for the
leader the margin is over the runner-up, for every other robot it is over the leader.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ember_core import fields

# Outside these the confidences are all 0/1 or all equal: a file asking for that is broken, not calibrated.
MAX_SCALE = 1e3
MIN_SCALE = 1e-3
MAX_MARGIN = 1e3
MAX_BIAS = 1e3


@dataclass(frozen=True)
class Calibration:
    """scale, margin and bias of the confidence formula (module docstring); the default is the raw sigmoid."""

    scale: float = 1.0
    margin: float = 0.0
    bias: float = 0.0

    def __post_init__(self) -> None:
        fields.number("calibration.scale", self.scale, MIN_SCALE, MAX_SCALE)
        fields.number("calibration.margin", self.margin, 0.0, MAX_MARGIN)
        fields.number("calibration.bias", self.bias, -MAX_BIAS, MAX_BIAS)

    @classmethod
    def from_record(cls, record: Any) -> Calibration:
        """The Calibration of processor_config.json's `calibration` object; FieldError naming a bad value."""
        try:
            record = fields.known_keys(record, {"scale", "margin", "bias"}, "calibration")
        except ValueError as err:
            raise fields.FieldError("calibration", str(err)) from None
        return cls(**record)

    @classmethod
    def from_temperature(cls, temperature: Any) -> Calibration:
        """The calibration a model saved with one temperature T had: sigmoid(logit / T)."""
        fields.number("temperature", temperature, 1.0 / MAX_SCALE, 1.0 / MIN_SCALE)
        return cls(scale=1.0 / float(temperature))

    def logits(self, robot_logits: torch.Tensor) -> torch.Tensor:
        """The calibrated logits (before the sigmoid) of (..., robots) head logits."""
        z = robot_logits.detach().float().cpu()
        return self.scale * z + self.margin * lead_over_others(z) + self.bias

    def probabilities(self, robot_logits: torch.Tensor) -> torch.Tensor:
        """Confidences of (..., robots) head logits, float32 on the CPU."""
        return torch.sigmoid(self.logits(robot_logits))

    def describe(self) -> str:
        return f"scale {self.scale:.4g}, margin {self.margin:.4g}, bias {self.bias:+.4g}"


def lead_over_others(robot_logits: torch.Tensor) -> torch.Tensor:
    """z_i - max_{j != i} z_j along the last axis; 0 for a fleet of one robot."""
    if robot_logits.shape[-1] < 2:
        return torch.zeros_like(robot_logits)
    top2 = robot_logits.topk(2, dim=-1).values
    best, second = top2[..., :1], top2[..., 1:]
    # For the leader the best other is the runner-up; for everyone else it is the leader.
    best_other = torch.where(robot_logits >= best, second, best)
    return robot_logits - best_other

