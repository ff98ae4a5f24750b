"""Fleet status from a fleet manager: which robots are available, busy or offline right now."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ember_core.fleet import Fleet

AVAILABILITY = ("available", "busy", "offline")
UNKNOWN = "unknown"  # no fleet status names the robot: treated as available
# Ranking order: a busy robot still beats an offline one, both come after every free robot.
RANK_ORDER = {"available": 0, UNKNOWN: 0, "busy": 1, "offline": 2}


@dataclass(frozen=True)
class FleetStatus:
    """Robot id -> availability; `ignored` lists ids the status named that are not in the fleet."""

    states: Mapping[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()

    def of(self, robot_id: str) -> str:
        return self.states.get(robot_id, UNKNOWN)

    def selectable(self, robot_id: str) -> bool:
        return RANK_ORDER[self.of(robot_id)] == 0


def parse_fleet_status(document: Any, fleet: Fleet) -> FleetStatus:
    """A FleetStatus from `{"available": [ids], "busy": [ids], "offline": [ids]}` (every key optional).

    Raises ValueError naming the offending key or id. Ids the fleet does not have are not an error
    (a fleet manager may track more robots than Ember selects from); they are listed in `ignored`.
    """
    if not isinstance(document, dict):
        raise ValueError(f"fleet status must be a JSON object like {{\"busy\": [\"drone\"]}}, got {type(document).__name__}")
    unknown_keys = sorted(set(document) - set(AVAILABILITY))
    if unknown_keys:
        raise ValueError(f"fleet status has unknown key(s) {unknown_keys}; use {', '.join(AVAILABILITY)}")
    states: dict[str, str] = {}
    ignored: list[str] = []
    for state in AVAILABILITY:
        ids = document.get(state, [])
        if not isinstance(ids, list) or not all(isinstance(robot_id, str) for robot_id in ids):
            raise ValueError(f"fleet status {state!r} must be a list of robot ids, got {ids!r}")
        for robot_id in ids:
            if robot_id in states and states[robot_id] != state:
                raise ValueError(f"fleet status names {robot_id!r} as both {states[robot_id]} and {state}")
            if robot_id in fleet.ids:
                states[robot_id] = state
            else:
                ignored.append(robot_id)
    return FleetStatus(states, tuple(ignored))
