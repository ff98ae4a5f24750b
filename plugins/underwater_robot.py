"""Underwater Robot: navigation, inspection and manipulation below the water surface."""
from __future__ import annotations

from ember_core import RobotType, TaskContext, hookimpl

UNDERWATER_ROBOT = RobotType(
    id="underwater_robot",
    name="Underwater Robot",
    description="Remotely operated or autonomous submersible for marine and flooded environments.",
    capabilities=["underwater navigation", "deep sea exploration", "marine inspection", "underwater manipulation"],
    limitations=["water environments only", "communication limitations", "pressure constraints"],
    environments=["underwater", "marine", "pools", "pipes", "ocean exploration"],
    roles=["underwater inspection", "subsea manipulation", "hull and pipe survey"],
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [UNDERWATER_ROBOT]


@hookimpl
def ember_robot_infeasible(robot: RobotType, context: TaskContext) -> str | None:
    # An unknown scene (no tags) is no evidence against water; a known dry scene is.
    if robot.id == UNDERWATER_ROBOT.id and context.scene and "underwater" not in context.scene:
        return f"{robot.name} operates only in water and the scene has none"
    return None
