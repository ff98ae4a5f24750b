"""The hooks a robot plugin implements, declared with pluggy under the project name "ember"."""
from __future__ import annotations

from dataclasses import dataclass

import pluggy

from ember_core.robot import RobotType

PROJECT_NAME = "ember"
ENTRY_POINT_GROUP = "ember.robots"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True)
class TaskContext:
    """What is known about a task when the cards' scene rules and the plugins judge whether a robot can do it.

    `scene` holds scene tags from `ember_core.scenes.SCENE_TAGS` (from a camera image: the coarse
    ones, `COARSE_SCENE_TAGS`); an empty set means the scene is unknown.
    """

    task: str
    scene: frozenset[str] = frozenset()


@hookspec
def ember_robot_types() -> list[RobotType]:
    """Declare the robot types this plugin provides, each with its capability card.

    Most plugins return one RobotType. A robots.yaml entry picks one of them by id when a plugin
    returns several. Called once when the fleet loads: anything it raises (and anything the plugin
    module raises on import, SystemExit too) becomes a FleetConfigError naming the file, the entry
    and the plugin; a call slower than `ember_core.limits.HOOK_TIME_BUDGET_S` is logged with its time.
    """


@hookspec
def ember_robot_infeasible(robot: RobotType, context: TaskContext) -> str | None:
    """Say why `robot` cannot work on this task at all, or return None to have no objection.

    A robot's own scene limits need no hook: its card's `excluded_scenes` and `required_scenes`
    state them, and `Fleet.infeasible` applies them before asking the plugins. This hook is for any
    other rule. It is called for every robot of the fleet on every plugin, so a plugin may veto its
    own robots or others (a site plugin could forbid drones indoors). Return a short reason a fleet
    manager can read ("drones are not allowed indoors at this site"); the Selector records it and
    ranks the robot last.

    Each plugin's hook is called on its own, so one failing plugin hides no other's answer. The rule
    for a misbehaving hook is "no veto, and a warning": a hook that raises (anything but
    KeyboardInterrupt), or returns anything but None or a non-empty string (42, a list, bytes, a
    blank string), does not veto the robot, and a warning naming the plugin is logged once per
    plugin, not once per request (`Fleet.hook_problems` keeps them). A reason is made one printable
    line and cut to `ember_core.fleet.MAX_REASON_CHARS` characters. The hook runs inside every
    selection: keep it well under `ember_core.limits.HOOK_TIME_BUDGET_S` (no file or network I/O). A
    slower call is logged with its time, once per plugin, but Ember cannot interrupt it (Python
    cannot stop a running function), so every selection waits for a slow hook, and one that never
    returns stalls selection: fix or remove such a plugin.
    """
