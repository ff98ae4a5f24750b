"""Ember core: robot plugins, the fleet registry, the model and the inference API."""
from ember_core.fleet import Fleet, UnknownRobotError
from ember_core.hookspecs import TaskContext, hookimpl
from ember_core.robot import RobotType, RobotTypeError
from ember_core.robots_file import FleetConfigError, find_robots_file, load_fleet

__all__ = [
    "Fleet",
    "FleetConfigError",
    "RobotType",
    "RobotTypeError",
    "TaskContext",
    "UnknownRobotError",
    "find_robots_file",
    "hookimpl",
    "load_fleet",
]
__version__ = "0.1.0"
