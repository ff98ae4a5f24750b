"""Robot with Wheels: fast, efficient transport of heavy loads on flat ground."""
from __future__ import annotations

from ember_core import RobotType, TaskContext, hookimpl
from ember_plugins import veto_underwater

ROBOT_WITH_WHEELS = RobotType(
    id="robot_with_wheels",
    name="Robot with Wheels",
    description="Wheeled ground vehicle that carries good payloads quickly over flat surfaces.",
    capabilities=["fast movement", "good payload", "stable platform", "efficient"],
    limitations=["flat surfaces only", "limited climbing", "obstacle avoidance"],
    environments=["indoor", "warehouse", "flat outdoor areas", "roads"],
    roles=["transport", "delivery", "mobile base"],
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [ROBOT_WITH_WHEELS]


@hookimpl
def ember_robot_infeasible(robot: RobotType, context: TaskContext) -> str | None:
    return veto_underwater(robot, context, ROBOT_WITH_WHEELS)
