"""Humanoid: manipulation, tool use and human interaction in human-made environments."""
from __future__ import annotations

from ember_core import RobotType, TaskContext, hookimpl
from ember_plugins import veto_underwater

HUMANOID = RobotType(
    id="humanoid",
    name="Humanoid",
    description="Two-armed, two-legged robot that works with human tools in spaces built for people.",
    capabilities=["manipulation", "walking", "human interaction", "complex tasks", "tool use"],
    limitations=["slow movement", "balance issues", "high power consumption"],
    environments=["indoor", "human environments", "stairs", "complex terrain"],
    roles=["manipulation", "tool operation", "assisting people"],
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [HUMANOID]


@hookimpl
def ember_robot_infeasible(robot: RobotType, context: TaskContext) -> str | None:
    return veto_underwater(robot, context, HUMANOID)
