"""The text format of the model's 4-step reasoning and subtask plan, and parsers that check generated text.

The language model writes this text, so the parsers accept any spacing but never fill anything in:
whatever is missing or wrong is reported in `problems` and the result is marked invalid.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ember_core.fleet import Fleet, UnknownRobotError

STEP_LABELS = ("Task analysis", "Environment assessment", "Capability matching", "Decision")
NUM_STEPS = len(STEP_LABELS)
MATCHING_STEP = 3
# Step 3 says of each robot "<Name> offers <phrase>, <phrase>" or "<Name> is less suited: <limitation>",
# robots separated by ";"; the phrases must be the card's own (capabilities and roles, or limitations).
OFFERS, LESS_SUITED = "offers", "is less suited:"
RELATIONS = {OFFERS: ("capabilities", "roles"), LESS_SUITED: ("limitations",)}
NO_ROBOT_DECISION = "no robot"  # "Select no robot: ..." when every robot is busy, offline or ruled out
NO_FREE_ROBOT = "no robot of the fleet is free"  # Step 3 then
PLAN_LINE_FORMAT = "<order>. <Robot Name>: <subtask>"

# A step marker may start a line or follow whitespace, so steps survive a decode that turned the
# newlines between them into spaces.
_STEP_MARKER = re.compile(r"(?:^|(?<=\s))Step\s*(\d+)\s*:")
_SELECT = re.compile(r"^Select\b\s*", re.IGNORECASE)
# The names end at the first sentence stop; a justification may follow it.
_NAMES_END = re.compile(r"\.(?:\s|$)")
_NAME_SEPARATOR = re.compile(r"^\s*(?:,\s*and\s+|,\s*|and\s+)", re.IGNORECASE)
_PLAN_LINE = re.compile(r"^(\d+)\s*[.)]\s*([^:]+?)\s*:\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Reasoning:
    """Parsed reasoning: the step lines found, the robot ids Step 4 selects, and what is wrong."""

    text: str
    steps: list[str]
    decision: list[str]
    valid: bool
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The `reasoning` object of the selection document."""
        return {
            "text": self.text,
            "steps": list(self.steps),
            "decision": list(self.decision),
            "reasoning_valid": self.valid,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Subtask:
    """One step of a plan; `depends_on` holds the ids of the subtasks of the nearest lower order."""

    id: int
    order: int
    description: str
    robot_id: str
    robot_type: str
    depends_on: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "order": self.order,
            "description": self.description,
            "robot_id": self.robot_id,
            "robot_type": self.robot_type,
            "depends_on": list(self.depends_on),
        }


@dataclass(frozen=True)
class Plan:
    """Parsed plan: the subtasks whose lines were well formed and named a fleet robot, and what is wrong."""

    text: str
    subtasks: list[Subtask]
    valid: bool
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The `plan` object of the selection document."""
        return {
            "text": self.text,
            "subtasks": [subtask.to_dict() for subtask in self.subtasks],
            "plan_valid": self.valid,
            "problems": list(self.problems),
        }


def join_names(names: Sequence[str]) -> str:
    """"A", "A and B", "A, B and C": robot names as Step 4 writes them."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def parse_reasoning(text: str, fleet: Fleet, selected: Sequence[str]) -> Reasoning:
    """Check generated reasoning against the format, the fleet and the robots the scores `selected`.

    `selected` holds robot ids (or names) in rank order; Step 4 must include the first and may only
    name robots from it.
    """
    selected_ids = [fleet.robot(key).id for key in selected]
    problems: list[str] = []
    found: list[tuple[int, str]] = []
    for line in text.splitlines():
        _split_line(" ".join(line.split()), found, problems)
    numbers = [number for number, _ in found]
    for number in sorted(set(numbers)):
        if numbers.count(number) > 1:
            problems.append(f"Step {number} appears {numbers.count(number)} times")
        if not 1 <= number <= NUM_STEPS:
            problems.append(f"unexpected Step {number}; the reasoning has Steps 1 to {NUM_STEPS}")
    for number in range(1, NUM_STEPS + 1):
        if number not in numbers:
            problems.append(f"Step {number} ({STEP_LABELS[number - 1]}) is missing")
    if numbers != sorted(numbers):
        problems.append(f"steps are out of order: {', '.join(map(str, numbers))}")
    decision: list[str] | None = None
    matched = False
    for number, body in found:
        if 1 <= number <= NUM_STEPS:
            rest = _check_label(number, body, problems)
            # A repeated step is reported above; only the first one is read.
            if number == MATCHING_STEP and not matched and rest:
                matched = True
                for fact in step3_facts(rest, fleet, problems):
                    if not fact.on_card:
                        problems.append(f"Step {MATCHING_STEP} says {fact.robot_name} {fact.relation} "
                                        f"{fact.phrase!r}, which its card does not list")
            if number == NUM_STEPS and decision is None:
                decision = _parse_decision(rest, fleet, selected_ids, problems) if rest else []
    steps = [f"Step {number}: {body}".rstrip() for number, body in found]
    return Reasoning(text=text, steps=steps, decision=decision or [], valid=not problems, problems=problems)


def format_plan(subtasks: Sequence[Subtask], fleet: Fleet) -> str:
    """One "<order>. <Robot Name>: <subtask>" line per subtask, in the given order."""
    lines = []
    for subtask in subtasks:
        if isinstance(subtask.order, bool) or not isinstance(subtask.order, int) or subtask.order < 1:
            raise ValueError(f"subtask {subtask.id}: order must be an integer >= 1, got {subtask.order!r}")
        description = _one_line(subtask.description, f"subtask {subtask.id} description")
        lines.append(f"{subtask.order}. {fleet.robot(subtask.robot_id).name}: {description}")
    return "\n".join(lines)


def parse_plan(text: str, fleet: Fleet, allow_empty: bool = False, team: Sequence[str] = ()) -> Plan:
    """Check a plan; an empty text is valid only with `allow_empty` (one robot does the job) and no `team`.

    With a `team` (robot ids needed together) the plan must give every member a subtask and no one else.
    """
    problems: list[str] = []
    entries: list[tuple[int, str, str]] = []
    orders: list[int] = []
    for line in (line.strip() for line in text.splitlines()):
        if not line:
            continue
        match = _PLAN_LINE.match(line)
        if match is None:
            problems.append(f"plan line {line!r} does not match '{PLAN_LINE_FORMAT}'")
            continue
        order, name, description = int(match[1]), " ".join(match[2].split()), " ".join(match[3].split())
        orders.append(order)
        try:
            entries.append((order, description, fleet.robot(name).id))
        except UnknownRobotError:
            problems.append(
                f"plan line {line!r} names {name!r}, which is not a robot of this fleet "
                f"({', '.join(fleet.names)}); the subtask is dropped"
            )
    problems += _order_problems(orders)
    if not entries and (text.strip() or not allow_empty or team):
        problems.append("the plan has no subtasks" + (f" but the job needs a team of {_names(team, fleet)}" if team else ""))
    assigned = {robot_id for _, _, robot_id in entries}
    if team and entries:
        missing = [robot_id for robot_id in team if robot_id not in assigned]
        outside = [robot_id for robot_id in dict.fromkeys(r for _, _, r in entries) if robot_id not in team]
        if missing:
            problems.append(f"the plan gives no subtask to {_names(missing, fleet)}, of the team {_names(team, fleet)}")
        if outside:
            problems.append(f"the plan assigns {_names(outside, fleet)}, not of the team {_names(team, fleet)}")
    subtasks = _link(entries, fleet)
    return Plan(text=text, subtasks=subtasks, valid=not problems, problems=problems)


def subtasks_from_records(records: Sequence[Mapping[str, Any]], fleet: Fleet) -> list[Subtask]:
    """Subtasks from the public dataset's [{"subtask", "assigned_robot", "execution_order"}, ...].

    Orders are kept as the dataset gives them, gaps included; `parse_plan` would report those gaps.
    """
    entries = []
    for position, record in enumerate(records, 1):
        description, name, order = (record.get(key) for key in ("subtask", "assigned_robot", "execution_order"))
        if not isinstance(description, str) or not description.strip():
            raise ValueError(f"record {position}: 'subtask' must be a non-empty string, got {description!r}")
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"record {position}: 'execution_order' must be an integer >= 1, got {order!r}")
        try:
            robot_id = fleet.robot(str(name)).id
        except UnknownRobotError as err:
            raise ValueError(f"record {position}: 'assigned_robot' {name!r} is not in the fleet: {err}") from err
        entries.append((order, " ".join(description.split()), robot_id))
    return _link(entries, fleet)


def _names(robot_ids: Sequence[str], fleet: Fleet) -> str:
    return join_names([fleet.robot(robot_id).name for robot_id in robot_ids])


def _one_line(value: str, what: str) -> str:
    """The text on one line; the formats are line based, so a newline inside would split a step."""
    text = " ".join(str(value).split())
    if not text:
        raise ValueError(f"{what} is empty; every reasoning step and subtask needs text")
    return text


def _split_line(line: str, found: list[tuple[int, str]], problems: list[str]) -> None:
    """Append the (number, body) of each step marker in `line`; text outside any step is a problem."""
    markers = list(_STEP_MARKER.finditer(line))
    head = line[: markers[0].start() if markers else len(line)].strip()
    if head:
        if not found:
            problems.append(f"text before Step 1: {head!r}")
        elif found[-1][0] >= NUM_STEPS:
            problems.append(f"text after Step {NUM_STEPS}: {head!r}")
        else:
            problems.append(f"line {head!r} is not a step; expected 'Step <n>: ...'")
    for i, marker in enumerate(markers):
        end = markers[i + 1].start() if i + 1 < len(markers) else len(line)
        found.append((int(marker[1]), line[marker.end():end].strip()))


def _check_label(number: int, body: str, problems: list[str]) -> str:
    """The step's text after its label; a missing label or an empty text is recorded as a problem."""
    label = STEP_LABELS[number - 1]
    match = re.match(_words_pattern(label) + r"\s*:\s*", body, re.IGNORECASE)
    if match is None and body:
        problems.append(f"Step {number} should start with '{label}:'")
    rest = body[match.end():] if match else body
    if not rest:
        problems.append(f"Step {number} ({label}) is empty")
    return rest


def _parse_decision(rest: str, fleet: Fleet, selected: list[str], problems: list[str]) -> list[str]:
    """Robot ids named after "Select", checked against the fleet and the selected robots."""
    select = _SELECT.match(rest)
    if select is None:
        problems.append(
            f"Step {NUM_STEPS} has no decision; expected 'Decision: Select <Robot Name>[, <Robot Name> and <Robot Name>].'"
        )
        return []
    phrase = rest[select.end():]
    if phrase.lower().startswith(NO_ROBOT_DECISION):
        if selected:
            problems.append(f"Step {NUM_STEPS} selects no robot, but the scores selected "
                            f"{', '.join(fleet.robot(robot_id).name for robot_id in selected)}")
        return []
    stop = _NAMES_END.search(phrase)
    phrase = phrase[: stop.start()] if stop else phrase
    names = _split_names(phrase, fleet)
    if not names:
        problems.append(f"Step {NUM_STEPS} selects no robot")
        return []
    decision: list[str] = []
    for name in names:
        try:
            robot_id = fleet.robot(name).id
        except UnknownRobotError:
            problems.append(
                f"Step {NUM_STEPS} selects {name!r}, which is not a robot of this fleet ({', '.join(fleet.names)})"
            )
            continue
        if robot_id in decision:
            problems.append(f"Step {NUM_STEPS} selects {fleet.robot(robot_id).name} twice")
        else:
            decision.append(robot_id)
    if selected and selected[0] not in decision:
        problems.append(f"Step {NUM_STEPS} does not select {fleet.robot(selected[0]).name}, the top-ranked robot")
    chosen = ", ".join(fleet.robot(robot_id).name for robot_id in selected) or "none"
    for robot_id in decision:
        if robot_id not in selected:
            name = fleet.robot(robot_id).name
            problems.append(f"Step {NUM_STEPS} selects {name}, which the scores did not select (selected: {chosen})")
    for robot_id in selected[1:]:
        if robot_id not in decision:
            problems.append(f"Step {NUM_STEPS} does not name {fleet.robot(robot_id).name}, which the scores selected")
    return decision


@dataclass(frozen=True)
class Fact:
    """One thing Step 3 attributes to a robot, and whether that robot's card lists it."""

    robot_id: str
    robot_name: str
    relation: str
    phrase: str
    on_card: bool


def step3_facts(text: str, fleet: Fleet, problems: list[str] | None = None) -> list[Fact]:
    """The facts Step 3 (its text after the label) attributes to robots, each checked against the card.

    A part between ";" that does not start with a fleet robot's name and a relation of RELATIONS is
    recorded in `problems` (when given) and yields no fact.
    """
    problems = [] if problems is None else problems
    facts: list[Fact] = []
    names = sorted(fleet.names, key=len, reverse=True)
    for part in (part.strip() for part in text.rstrip().rstrip(".").split(";")):
        if not part or part == NO_FREE_ROBOT:
            continue
        head = next(((name, relation) for name in names for relation in RELATIONS
                     if re.match(_words_pattern(f"{name} {relation}"), part, re.IGNORECASE)), None)
        if head is None:
            problems.append(f"Step {MATCHING_STEP} part {part!r} does not start with '<Robot Name> offers' "
                            f"or '<Robot Name> {LESS_SUITED}'")
            continue
        robot = fleet.robot(head[0])
        card = {phrase.lower() for field in RELATIONS[head[1]] for phrase in getattr(robot, field)}
        rest = re.sub(_words_pattern(f"{head[0]} {head[1]}"), "", part, count=1, flags=re.IGNORECASE)
        for phrase in (" ".join(piece.split()) for piece in rest.split(",")):
            if phrase:
                facts.append(Fact(robot.id, robot.name, head[1], phrase, phrase.lower() in card))
    return facts


def _split_names(phrase: str, fleet: Fleet) -> list[str]:
    """Split "A, B and C" into names, matching fleet names first so a name containing "and" stays whole."""
    names: list[str] = []
    rest = phrase.strip()
    patterns = [
        re.compile(_words_pattern(name) + r"(?=\s*,|\s+and\s|\s*$)", re.IGNORECASE)
        for name in sorted(fleet.names, key=len, reverse=True)
    ]
    while rest:
        match = next((m for m in (p.match(rest) for p in patterns) if m), None)
        if match is None:
            match = re.match(r"^(.+?)(?=\s*,|\s+and\s|\s*$)", rest, re.IGNORECASE)
        names.append(" ".join(match[0].split()))
        rest = rest[match.end():]
        separator = _NAME_SEPARATOR.match(rest)
        rest = rest[separator.end():] if separator else rest.strip()
    return names


def _words_pattern(phrase: str) -> str:
    """A regex matching `phrase` at the start of a string, with any spacing between its words."""
    return "^" + r"\s+".join(map(re.escape, phrase.split()))


def _order_problems(orders: list[int]) -> list[str]:
    """Orders must run 1, 2, 3, ... with no gap; several subtasks may share one."""
    present = sorted(set(orders))
    if not present:
        return []
    problems = []
    if present[0] != 1:
        problems.append(f"plan orders start at {present[0]}, not 1")
    missing = [order for order in range(present[0] + 1, present[-1]) if order not in present]
    if missing:
        problems.append(
            f"plan skips order {', '.join(map(str, missing))} (orders found: {', '.join(map(str, present))})"
        )
    return problems


def _link(entries: Sequence[tuple[int, str, str]], fleet: Fleet) -> list[Subtask]:
    """Subtasks with ids by position; each depends on every subtask of the nearest lower order present."""
    ids_by_order: dict[int, list[int]] = {}
    for position, (order, _, _) in enumerate(entries, 1):
        ids_by_order.setdefault(order, []).append(position)
    subtasks = []
    for position, (order, description, robot_id) in enumerate(entries, 1):
        lower = [other for other in ids_by_order if other < order]
        depends_on = ids_by_order[max(lower)] if lower else []
        subtasks.append(Subtask(position, order, description, robot_id, fleet.robot(robot_id).name, list(depends_on)))
    return subtasks
