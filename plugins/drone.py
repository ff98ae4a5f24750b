"""Drone: the fastest robot type, for aerial surveillance, inspection and light transport."""
from __future__ import annotations

from ember_core import RobotType, TaskContext, hookimpl
from ember_plugins import veto_underwater

DRONE = RobotType(
    id="drone",
    name="Drone",
    description="Multirotor aerial robot that reaches high or distant places quickly.",
    capabilities=["fastest", "aerial navigation", "surveillance", "lightweight transport", "aerial inspection"],
    limitations=["limited payload", "loud", "weather dependent", "battery life"],
    environments=["outdoor", "large indoor spaces", "hard to reach areas"],
    roles=["aerial survey", "scouting", "overwatch", "light delivery"],
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [DRONE]


@hookimpl
def ember_robot_infeasible(robot: RobotType, context: TaskContext) -> str | None:
    return veto_underwater(robot, context, DRONE)
