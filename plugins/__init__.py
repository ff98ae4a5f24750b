"""Ember's built-in robot plugins (installed as `ember_plugins`), one module per robot type."""
from __future__ import annotations

from ember_core import RobotType, TaskContext


def veto_underwater(robot: RobotType, context: TaskContext, own: RobotType) -> str | None:
    """The objection of a robot that cannot work under water, raised only for that robot itself."""
    if robot.id == own.id and "underwater" in context.scene:
        return f"{robot.name} cannot operate under water"
    return None
