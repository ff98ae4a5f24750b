"""Fleet: the ordered robot types, the single source of truth for robot ids, names and indices.

Also where the fleet's feasibility rules run (cards, then each plugin's hook on its own) and what
`ember robots validate` warns about a fleet that loads (`fleet_warnings`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
from typing import Any, Iterator, Sequence

import pluggy

from ember_core import hookspecs
from ember_core.excerpt import describe_error, excerpt
from ember_core.hook_calls import HookCall, call_each
from ember_core.hookspecs import TaskContext
from ember_core.limits import HOOK_TIME_BUDGET_S
from ember_core.robot import LIST_FIELDS, RobotType

log = logging.getLogger(__name__)

INFEASIBLE_HOOK = "ember_robot_infeasible"
# A reason a fleet manager reads in one line; a longer one is cut here (and ends with "…").
MAX_REASON_CHARS = 200
# `fleet_warnings` flags a fleet larger than this: the prompt carries every card (shortened as the
# fleet grows), and 50 robots is what the prompt budget is sized and benchmarked for
# (benchmarks/fleet_size.py); a token-based warning may replace this count.
LARGE_FLEET = 50


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
        # Problems of plugin hooks seen so far, each (plugin, kind) logged once, not once per request.
        self.hook_problems: dict[tuple[str, str], str] = {}
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

    @functools.cached_property  # every result names it; the cards never change after loading
    def hash(self) -> str:
        """sha256 of the ordered cards: equal hashes mean the same robots, order and facts."""
        cards = [robot.to_dict() for robot in self.robots]
        blob = json.dumps(cards, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def infeasible(self, context: TaskContext) -> dict[str, list[str]]:
        """Why robots cannot do the task: {robot id: [reasons]}, vetoed robots only.

        Each card's scene rules (`RobotType.infeasible_in`) come first, then every plugin's
        `ember_robot_infeasible` hook in robots.yaml order, each plugin called on its own. A hook that
        raises, or returns anything but None or a non-empty string, does not veto: it is logged as a
        warning naming the plugin, once per plugin and kind of problem (see `hook_problems`). A
        reason is made one printable line of at most MAX_REASON_CHARS characters. A hook slower than
        HOOK_TIME_BUDGET_S is reported with its time; it is not stopped, so every selection waits for it.
        """
        vetoes: dict[str, list[str]] = {}
        for robot in self.robots:
            reasons = robot.infeasible_in(context.scene)
            for call in call_each(self._plugins, INFEASIBLE_HOOK, robot=robot, context=context):
                reasons += self._vet(call)
            if reasons:
                vetoes[robot.id] = reasons
        return vetoes

    def _vet(self, call: HookCall) -> list[str]:
        """The reasons of one plugin's call; each problem reported (once) and counted as no objection."""
        where = f"plugin '{call.plugin}': hook '{INFEASIBLE_HOOK}'"
        if call.seconds > HOOK_TIME_BUDGET_S:
            self._report(call.plugin, "slow", f"{where} took {call.seconds:.2f} s, above the budget of "
                         f"{HOOK_TIME_BUDGET_S:g} s (ember_core.limits.HOOK_TIME_BUDGET_S); every selection waits "
                         "for it, since Ember cannot interrupt a hook: make it faster")
        if call.error is not None:
            self._report(call.plugin, "raised", f"{where} raised {describe_error(call.error)}; "
                         "counted as no objection until the plugin is fixed")
            return []
        reasons = []
        for value in call.results:
            reason, problem = vet_reason(value)
            if problem:
                self._report(call.plugin, problem[0], f"{where} {problem[1]}")
            if reason:
                reasons.append(reason)
        return reasons

    def _report(self, plugin: str, kind: str, message: str) -> None:
        if (plugin, kind) not in self.hook_problems:
            self.hook_problems[(plugin, kind)] = message
            log.warning("%s", message)

    def summary(self) -> list[dict]:
        """The fleet as JSON-ready records {id, name, capabilities, limitations, environments}."""
        keys = ("id", "name", "capabilities", "limitations", "environments")
        cards = [robot.to_dict() for robot in self.robots]
        return [{key: card[key] for key in keys} for card in cards]

    def __repr__(self) -> str:
        return f"Fleet({', '.join(self.ids)})"


def fleet_warnings(fleet: Fleet, limit: int = 20) -> list[str]:
    """What is odd about a fleet that loads: near a size limit, or cards the model can hardly tell apart.

    At most `limit` warnings, the weightiest first, then one line counting the rest; `ember robots
    validate` prints them.
    """
    warnings = []
    if len(fleet) > LARGE_FLEET:
        warnings.append(f"the fleet has {len(fleet)} robots, more than {LARGE_FLEET}: the prompt carries every card, "
                        "so large fleets leave the task little room in the model's context and select more slowly")
    for part, key_of in (("description", lambda r: _phrase_key(r.description)),
                         ("capabilities", lambda r: "|".join(sorted({_phrase_key(c) for c in r.capabilities})))):
        owners: dict[str, str] = {}
        for robot in fleet:
            first = owners.setdefault(key_of(robot), robot.id)
            if first != robot.id:
                warnings.append(f"robots '{first}' and '{robot.id}' have the same {part}: the model can hardly tell them "
                                "apart; make their cards differ")
    example_owner: dict[str, str] = {}
    shared: dict[tuple[str, str], list[str]] = {}
    for robot in fleet:
        for example in robot.examples:
            first = example_owner.setdefault(_phrase_key(example), robot.id)
            if first != robot.id:
                shared.setdefault((first, robot.id), []).append(example)
    for (first, second), examples in shared.items():
        count = f"the example request {excerpt(examples[0])}" if len(examples) == 1 else \
            f"{len(examples)} example requests, such as {excerpt(examples[0])}"
        warnings.append(f"robots '{first}' and '{second}' both list {count}: it teaches the model nothing about which "
                        "of them to pick; keep each example on one")
    for robot in fleet:
        for name in LIST_FIELDS:
            seen: set[str] = set()
            for phrase in getattr(robot, name):
                if _phrase_key(phrase) in seen:
                    warnings.append(f"robot '{robot.id}': field '{name}' lists {excerpt(phrase)} twice (ignoring case "
                                    "and punctuation); remove one")
                seen.add(_phrase_key(phrase))
    if len(warnings) > limit:
        warnings[limit:] = [f"... and {len(warnings) - limit} more warnings"]
    return warnings


def _phrase_key(phrase: str) -> str:
    """A phrase compared without case and punctuation ("Aerial navigation." equals "aerial navigation")."""
    return " ".join("".join(ch if ch.isalnum() else " " for ch in phrase.casefold()).split())


def _normalise(name: str) -> str:
    """Case- and spacing-insensitive form of a display name ("robot  with LEGS" -> "robot with legs")."""
    return " ".join(name.replace("_", " ").split()).casefold()


def vet_reason(value: Any) -> tuple[str | None, tuple[str, str] | None]:
    """A hook's answer as (reason or None, (kind, problem) or None): a reason is one printable line,
    at most MAX_REASON_CHARS long; anything but a non-empty string is no reason."""
    if not isinstance(value, str):
        return None, ("result", f"returned {excerpt(value)} (a {type(value).__name__}); expected None or a "
                                "non-empty reason string, so it counts as no objection")
    text = str.__str__(value)[: MAX_REASON_CHARS * 4]
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if not text:
        return None, ("result", "returned a blank string; return None for no objection, or a reason")
    if len(text) > MAX_REASON_CHARS:
        return text[: MAX_REASON_CHARS - 1] + "…", ("long", f"returned a reason of {len(value)} characters, cut to "
                                                             f"{MAX_REASON_CHARS}; keep reasons to one short line")
    return text, None
