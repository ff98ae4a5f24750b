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

import numpy as np

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

    def logits(self, robot_logits: Any) -> Any:
        """The calibrated logits (before the sigmoid) of (..., robots) head logits, float32 (see the module docstring)."""
        z = _float32(robot_logits)
        return _like(robot_logits, self.scale * z + self.margin * lead_over_others(z) + self.bias, np.float32)

    def probabilities(self, robot_logits: Any) -> Any:
        """Confidences of (..., robots) head logits, float32 (see the module docstring)."""
        with np.errstate(over="ignore"):  # exp(-z) overflows to inf for z < -88: the confidence is 0
            return _like(robot_logits, 1.0 / (1.0 + np.exp(-self.logits(_float32(robot_logits)))), np.float32)

    def describe(self) -> str:
        return f"scale {self.scale:.4g}, margin {self.margin:.4g}, bias {self.bias:+.4g}"


def lead_over_others(robot_logits: Any) -> Any:
    """z_i - max_{j != i} z_j along the last axis, of the kind and dtype of `robot_logits`; 0 for a fleet of one robot."""
    z = np.asarray(robot_logits.detach().cpu() if hasattr(robot_logits, "detach") else robot_logits)
    if z.shape[-1] < 2:
        return _like(robot_logits, np.zeros_like(z))
    top2 = -np.partition(-z, 1, axis=-1)[..., :2]
    best, second = top2[..., :1], top2[..., 1:]
    # For the leader the best other is the runner-up; for everyone else it is the leader.
    best_other = np.where(z >= best, second, best)
    return _like(robot_logits, z - best_other)


def _float32(values: Any) -> np.ndarray:
    """A numpy float32 array of a numpy array or a torch tensor (on any device, in any float dtype)."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu()
    return np.asarray(values, dtype=np.float32)


def _like(original: Any, result: np.ndarray, dtype: Any = None) -> Any:
    """`result` as the kind of array `original` is: numpy stays numpy; for a torch tensor, a CPU tensor of
    `original`'s dtype (float32 with `dtype` np.float32), made by the tensor's own `new_tensor` so that this
    module never imports torch."""
    if not hasattr(original, "detach"):
        return result
    base = original.detach().cpu()
    return (base.float() if dtype is np.float32 else base).new_tensor(result)
