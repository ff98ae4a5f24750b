"""The selector node's parameters, one table: the node, config/selector.yaml, the README and launch read it.

Plain Python (no ROS imports), so launch_defaults and the tests can read it where ROS is not installed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ember_core.request import DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_TOP_K


@dataclass(frozen=True)
class Spec:
    name: str
    default: Any  # its type is the parameter's type
    description: str
    read_only: bool = False  # read once at configure; change it in the params file and reconfigure
    low: float | None = None  # inclusive range, for int and float parameters
    high: float | None = None


SPECS = (
    Spec("robots_file", "", "robots.yaml of the fleet; empty: $EMBER_ROBOTS, ./robots.yaml, then the installed one", True),
    Spec("model_path", "", "model directory written by save_pretrained; empty: the model shipped with Ember", True),
    Spec("device", "auto", "torch device: auto, cpu, cuda, cuda:1 ...", True),
    Spec("backend", "", "torch, or onnx (onnxruntime, for a model_path written by `ember export onnx`); empty: onnx "
                        "for such a directory, torch otherwise", True),
    Spec("latch_results", False, "publish results transient-local, so a late subscriber gets the last one", True),
    Spec("autostart", True, "configure and activate on start-up", True),
    Spec("scene_vetoes", True, "let the fleet's scene rules (cards and plugins) rule robots out by the scene the model sees in the image", True),
    Spec("top_k", DEFAULT_TOP_K, "how many ranked robots a result lists (a task's JSON top_k overrides it)", low=1, high=64),
    Spec("confidence_threshold", DEFAULT_CONFIDENCE_THRESHOLD,
         "robots after the first are selected when their confidence reaches this", low=0.0, high=1.0),
    Spec("return_reasoning", True, "generate the 4-step reasoning and the subtask plan (slower)"),
    Spec("max_image_age", 2.0, "seconds: a task is paired with the newest image no older than this", low=0.0, high=3600.0),
    Spec("require_image", True, "true: a task without a fresh image is answered no_image/stale_image; false: text only"),
    Spec("queue_size", 4, "pending tasks kept; when full the oldest is answered rejected_busy", low=1, high=1000),
    Spec("stall_timeout", 60.0, "seconds one task may run before diagnostics report the worker stalled (ERROR)",
         low=1.0, high=3600.0),
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
    stall_timeout: float


def problems(updates: dict[str, Any]) -> list[str]:
    """What is wrong with proposed values (types, read-only and ranges are checked by rclpy first)."""
    return [f"{name} must be a finite number, got {value}"
            for name, value in updates.items() if isinstance(value, float) and not math.isfinite(value)]


def settings(values: dict[str, Any]) -> Settings:
    return Settings(**{name: values[name] for name in Settings.__dataclass_fields__})
