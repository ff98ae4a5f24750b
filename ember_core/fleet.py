"""Fleet: the ordered robot types, the single source of truth for robot ids, names and indices."""
from __future__ import annotations

import hashlib
import json
from typing import Iterator, Sequence

import pluggy

from ember_core import hookspecs
from ember_core.hookspecs import TaskContext
from ember_core.robot import RobotType

class UnknownRobotError(LookupError):
    """A robot id or name that is not in the fleet."""

    def __str__(self) -> str:
        return str(self.args[0])


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows Ember's hook specifications and no plugins yet."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


class Fleet:
    """The robot types a deployment can choose from, in robots.yaml order.

    Index i of every model output, metric and message refers to `fleet.robots[i]`; code never lists
    robot names itself. `hash` identifies the fleet (ids, order and cards) inside checkpoints.
    """

    def __init__(self, robots: Sequence[RobotType], plugin_manager: pluggy.PluginManager | None = None):
        if not robots:
            raise ValueError("a fleet needs at least one robot type")
        self.robots: tuple[RobotType, ...] = tuple(robots)
        self._plugins = plugin_manager or new_plugin_manager()
        self._index: dict[str, int] = {}
        for i, robot in enumerate(self.robots):
            for key in (robot.id, _normalise(robot.name)):
                if key in self._index and self._index[key] != i:
                    raise ValueError(f"robot id or name {key!r} is used by two robot types")
                self._index[key] = i

    @property
    def ids(self) -> list[str]:
        return [robot.id for robot in self.robots]

    @property
    def names(self) -> list[str]:
        return [robot.name for robot in self.robots]

    @property
    def num_robots(self) -> int:
        return len(self.robots)

    def __len__(self) -> int:
        return len(self.robots)

    def __iter__(self) -> Iterator[RobotType]:
        return iter(self.robots)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._index or _normalise(key) in self._index)

    def index(self, key: str) -> int:
        """Position of a robot given its id ("robot_with_legs") or display name ("Robot with Legs")."""
        found = self._index.get(key)
        if found is None:
            found = self._index.get(_normalise(key))
        if found is None:
            raise UnknownRobotError(
                f"unknown robot {key!r}; this fleet has: {', '.join(self.ids)} "
                f"(ids) / {', '.join(self.names)} (names)"
            )
        return found

    def robot(self, key: str) -> RobotType:
        return self.robots[self.index(key)]

    @property
    def hash(self) -> str:
        """sha256 of the ordered cards: equal hashes mean the same robots, order and facts."""
        cards = [robot.to_dict() for robot in self.robots]
        blob = json.dumps(cards, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def infeasible(self, context: TaskContext) -> dict[str, list[str]]:
        """Why robots cannot do the task: {robot id: [reasons]}, vetoed robots only.

        Each card's scene rules (`RobotType.infeasible_in`) come first, then every plugin's
        `ember_robot_infeasible` hook, which may veto any robot of the fleet by a rule of its own.
        """
        vetoes: dict[str, list[str]] = {}
        for robot in self.robots:
            reasons = robot.infeasible_in(context.scene)
            reasons += [r for r in self._plugins.hook.ember_robot_infeasible(robot=robot, context=context) if r]
            if reasons:
                vetoes[robot.id] = reasons
        return vetoes

    def summary(self) -> list[dict]:
        """The fleet as JSON-ready records {id, name, capabilities, limitations, environments}."""
        keys = ("id", "name", "capabilities", "limitations", "environments")
        cards = [robot.to_dict() for robot in self.robots]
        return [{key: card[key] for key in keys} for card in cards]

    def __repr__(self) -> str:
        return f"Fleet({', '.join(self.ids)})"


def _normalise(name: str) -> str:
    """Case- and spacing-insensitive form of a display name ("robot  with LEGS" -> "robot with legs")."""
    return " ".join(name.replace("_", " ").split()).casefold()
