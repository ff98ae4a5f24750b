"""Robot with Legs: stable locomotion and load carrying over rough terrain and stairs."""
from __future__ import annotations

from ember_core import RobotType, TaskContext, hookimpl
from ember_plugins import veto_underwater

ROBOT_WITH_LEGS = RobotType(
    id="robot_with_legs",
    name="Robot with Legs",
    description="Quadruped that walks over uneven ground, rubble and stairs while carrying sensors or loads.",
    capabilities=["rough terrain navigation", "stability", "load carrying", "inspection"],
    limitations=["limited manipulation", "height restrictions"],
    environments=["outdoor", "uneven terrain", "stairs", "industrial sites", "search and rescue"],
    roles=["ground inspection", "search", "carrying loads over rough terrain"],
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [ROBOT_WITH_LEGS]


@hookimpl
def ember_robot_infeasible(robot: RobotType, context: TaskContext) -> str | None:
    return veto_underwater(robot, context, ROBOT_WITH_LEGS)
