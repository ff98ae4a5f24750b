"""The selector node's parameters: descriptors with ranges, and the settings snapshot the worker reads."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

BACKENDS = ("torch",)


@dataclass(frozen=True)
class Spec:
    name: str
    default: Any
    description: str
    read_only: bool = False  # read once at configure; change it in the params file and reconfigure
    low: float | None = None
    high: float | None = None
    constraints: str = ""

    def descriptor(self) -> ParameterDescriptor:
        kind = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}[type(self.default)]
        descriptor = ParameterDescriptor(name=self.name, type=kind, description=self.description,
                                         read_only=self.read_only, additional_constraints=self.constraints)
        if kind == ParameterType.PARAMETER_INTEGER:
            descriptor.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
        elif kind == ParameterType.PARAMETER_DOUBLE:
            descriptor.floating_point_range = [FloatingPointRange(from_value=self.low, to_value=self.high, step=0.0)]
        return descriptor


SPECS = (
    Spec("model_path", "", "model directory written by save_pretrained; empty: the model shipped with Ember", True),
    Spec("robots_file", "", "robots.yaml of the fleet; empty: $EMBER_ROBOTS, ./robots.yaml, then the installed one", True),
    Spec("backend", "torch", "inference backend", True, constraints="one of: " + ", ".join(BACKENDS)),
    Spec("device", "auto", "torch device: auto, cpu, cuda, cuda:1 ...", True),
    Spec("latch_results", False, "publish results transient-local, so a late subscriber gets the last one", True),
    Spec("autostart", True, "configure and activate on start-up", True),
    Spec("scene_vetoes", True, "let the plugins rule robots out by the scene the model sees in the image", True),
    Spec("top_k", 3, "how many ranked robots a result lists (a task's JSON top_k overrides it)", low=1, high=64),
    Spec("confidence_threshold", 0.5, "robots after the first are selected when their confidence reaches this", low=0.0, high=1.0),
    Spec("return_reasoning", True, "generate the 4-step reasoning and the subtask plan (slower)"),
    Spec("max_image_age", 2.0, "seconds: a task is paired with the newest image no older than this", low=0.0, high=3600.0),
    Spec("require_image", True, "true: a task without a fresh image is answered no_image/stale_image; false: text only"),
    Spec("queue_size", 4, "pending tasks kept; when full the oldest is answered rejected_busy", low=1, high=1000),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True)
class Settings:
    """The dynamic parameters as one immutable snapshot: the worker reads it whole, never half-updated."""

    top_k: int
    confidence_threshold: float
    return_reasoning: bool
    max_image_age: float
    require_image: bool
    queue_size: int


def problems(updates: dict[str, Any]) -> list[str]:
    """What is wrong with proposed values (types, read-only and ranges are checked by rclpy first)."""
    found = []
    for name, value in updates.items():
        if isinstance(value, float) and not math.isfinite(value):
            found.append(f"{name} must be a finite number, got {value}")
        if name == "backend" and value not in BACKENDS:
            found.append(f"backend {value!r} is not available; use one of {', '.join(BACKENDS)}")
    return found


def settings(values: dict[str, Any]) -> Settings:
    return Settings(**{name: values[name] for name in Settings.__dataclass_fields__})
