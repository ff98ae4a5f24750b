"""What `selector.launch.py` starts, in plain Python: its arguments, the node's parameters and remaps.

The launch file and the tests both read this module, so the command line the tests give the
`selector` executable (`command_line()`) is the one `ros2 launch` builds from the same values.
Importing it needs neither `launch` nor rclpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ember_core.paths import share_dir
from ember_ros.parameters import SPEC_BY_NAME

PACKAGE = "ember_ros"
EXECUTABLE = "selector"
NODE_NAME = "ember_selector"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


def default_params_file() -> Path:
    return share_dir() / "config" / "selector.yaml"


def _parameter_argument(name: str) -> LaunchArgument:
    """A launch argument that sets the node parameter `name`; what it means comes from parameters.SPECS.

    Its default is empty, which keeps the params file's value: any other default would override the
    file on every launch, and a params file's `autostart: false` would never apply.
    """
    spec = SPEC_BY_NAME[name]
    shown = str(spec.default).lower() if isinstance(spec.default, bool) else repr(spec.default)
    return LaunchArgument(name, "", f"parameter {name}: {spec.description} (default {shown}). "
                                    "Leave the argument empty to keep the params file's value")


ARGUMENTS = (
    LaunchArgument("namespace", "", "namespace of the node and its relative topics"),
    LaunchArgument("params_file", str(default_params_file()), "YAML parameters file (the `/**:` keys apply to any node name)"),
    _parameter_argument("robots_file"),
    _parameter_argument("model_path"),
    LaunchArgument("image_topic", "image", "camera topic (sensor_msgs/Image; image/compressed is remapped alongside)"),
    LaunchArgument("task_topic", "task", "task topic (std_msgs/String: plain text or JSON)"),
    LaunchArgument("use_sim_time", "false", "use the /clock topic (simulation) for image ages and stamps"),
    LaunchArgument("log_level", "info", "node log level: debug, info, warn, error, fatal"),
    _parameter_argument("autostart"),
)
DEFAULTS = {argument.name: argument.default for argument in ARGUMENTS}


def _true(name: str, text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"launch argument {name}:={text!r}: expected true or false")
    return text.lower() == "true"


def parameter_overrides(values: Mapping[str, str]) -> dict[str, object]:
    """Parameters the launch arguments set on top of the params file; an empty argument leaves the file's value."""
    overrides: dict[str, object] = {"use_sim_time": _true("use_sim_time", values["use_sim_time"])}
    for argument in ARGUMENTS:
        spec, text = SPEC_BY_NAME.get(argument.name), values[argument.name]
        if spec is not None and text:
            overrides[argument.name] = _true(argument.name, text) if isinstance(spec.default, bool) else text
    return overrides


def remappings(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """Topic remaps; the compressed stream follows the image topic as image_transport names it."""
    image, task = values["image_topic"], values["task_topic"]
    return [("image", image), ("image/compressed", f"{image}/compressed"), ("task", task)]


def command_line(values: Mapping[str, str]) -> list[str]:
    """The `--ros-args` the launch file's Node action gives the executable for these argument values."""
    values = {**DEFAULTS, **values}
    args = ["--ros-args", "-r", f"__node:={NODE_NAME}"]
    if values["namespace"]:
        args += ["-r", f"__ns:=/{values['namespace'].strip('/')}"]
    args += ["--params-file", values["params_file"]]
    for name, value in parameter_overrides(values).items():
        args += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    for source, target in remappings(values):
        args += ["-r", f"{source}:={target}"]
    return args + ["--log-level", values["log_level"]]
