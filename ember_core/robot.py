"""RobotType: one robot type of the fleet and its capability card, validated on creation."""
from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping

from ember_core.excerpt import excerpt, printable
from ember_core.scenes import SCENE_TAGS, SCENE_WORDS

# Matched with fullmatch: `re.match` with `$` would accept "drone\n" ($ matches before a final newline).
ID_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
# ASCII and Latin-1 control characters (Unicode category Cc); whitespace among them collapses to single spaces.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Card fields that hold lists of strings (short phrases; whole sentences for `examples`; scene tags
# for the scene rules); the dataset's instruction text shows the first three.
LIST_FIELDS = ("capabilities", "limitations", "environments", "roles", "excluded_scenes", "required_scenes", "examples")
# List fields a card may leave empty.
OPTIONAL_LIST_FIELDS = ("roles", "excluded_scenes", "required_scenes", "examples")
# The scene rules: list fields whose entries must be tags of ember_core.scenes.SCENE_TAGS.
SCENE_RULE_FIELDS = ("excluded_scenes", "required_scenes")
# Optional figures a fleet manager plans with; None means "not stated by the plugin".
NUMBER_FIELDS = ("payload_kg", "max_speed_mps", "endurance_min", "max_depth_m", "max_altitude_m")


class RobotTypeError(ValueError):
    """A robot type's card is invalid; `field` names the offending card field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"field '{field_name}': {message}")
        self.field = field_name


@dataclass(frozen=True)
class RobotType:
    """A robot type: stable id, display name and capability card.

    `capabilities`, `limitations` and `environments` are the facts the model is prompted with;
    `roles` are the parts this robot typically takes in a multi-robot plan (e.g. "aerial survey");
    `examples` are typical requests this robot is the one for, written as a user would ask them: the
    model matches a task against them as it does against the capabilities, which is what lets it
    place tasks phrased in new ways, and robots added after training, without retraining.

    The scene rules say where the robot cannot work at all, so a plugin needs no code for them:
    `excluded_scenes` lists scene tags that rule it out (a drone: "underwater"), `required_scenes`
    tags of which a known scene must show at least one (an underwater robot: "underwater"); an
    unknown scene (no tags) is no evidence against a robot. `Fleet.infeasible` applies them.
    """

    id: str
    name: str
    description: str
    capabilities: tuple[str, ...]
    limitations: tuple[str, ...]
    environments: tuple[str, ...]
    roles: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    payload_kg: float | None = None
    max_speed_mps: float | None = None
    endurance_min: float | None = None
    max_depth_m: float | None = None
    max_altitude_m: float | None = None
    # Last, so cards built positionally and fleet.json records written before the rules still load.
    excluded_scenes: tuple[str, ...] = ()
    required_scenes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not ID_PATTERN.fullmatch(self.id):
            raise RobotTypeError(
                "id", f"{excerpt(self.id)} is not a valid id; use lower_snake_case such as 'underwater_robot'"
            )
        for name in ("name", "description"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise RobotTypeError(name, f"expected a non-empty string, got {excerpt(value)}")
            object.__setattr__(self, name, _text(name, value))
        for name in LIST_FIELDS:
            object.__setattr__(self, name, _phrases(name, getattr(self, name), required=name not in OPTIONAL_LIST_FIELDS))
        for name in SCENE_RULE_FIELDS:
            for tag in getattr(self, name):
                if tag not in SCENE_TAGS:
                    raise RobotTypeError(name, f"unknown scene tag {excerpt(tag)}; known scene tags: {', '.join(SCENE_TAGS)}")
        for tag in self.required_scenes:
            if tag in self.excluded_scenes:
                raise RobotTypeError("required_scenes", f"{tag!r} is also in excluded_scenes; a tag cannot both rule "
                                                        "the robot out and be required, remove it from one of them")
        for name in NUMBER_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            try:  # an int too large for a float (10**400) is an error too, not an OverflowError
                number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
            except OverflowError:
                number = math.nan
            if not math.isfinite(number) or number < 0:
                raise RobotTypeError(name, f"expected a non-negative number or null, got {excerpt(value)}")
            object.__setattr__(self, name, number)

    def infeasible_in(self, scene: frozenset[str]) -> list[str]:
        """Why the card's scene rules rule this robot out of `scene` (scene tags), or [] when they do not."""
        reasons = [f"{self.name} cannot operate {SCENE_WORDS[tag]}" for tag in SCENE_TAGS
                   if tag in self.excluded_scenes and tag in scene]
        # An empty scene is unknown, not dry land or open air: it is no evidence against the robot.
        if self.required_scenes and scene and not any(tag in scene for tag in self.required_scenes):
            words = [SCENE_WORDS[tag] for tag in SCENE_TAGS if tag in self.required_scenes]
            reasons.append(f"{self.name} operates only {' or '.join(words)} and the scene shows none of that")
        return reasons

    def with_overrides(self, overrides: Mapping[str, Any]) -> RobotType:
        """Return a copy with card fields replaced (the `overrides:` of a robots.yaml entry)."""
        known = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in known:
                field_name = printable(key, 40) if isinstance(key, str) else excerpt(key, 40)
                raise RobotTypeError(field_name, f"unknown card field; known fields: {', '.join(sorted(known))}")
        if "id" in overrides and overrides["id"] != self.id:
            raise RobotTypeError("id", "the id is fixed by the plugin and cannot be overridden")
        return dataclasses.replace(self, **dict(overrides))

    def to_dict(self) -> dict[str, Any]:
        """The card as plain JSON-ready data (lists, not tuples)."""
        data = dataclasses.asdict(self)
        for name in LIST_FIELDS:
            data[name] = list(data[name])
        return data


def _phrases(field_name: str, value: Any, required: bool) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise RobotTypeError(field_name, f"expected a list of strings, got {excerpt(value)}")
    if required and not value:
        raise RobotTypeError(field_name, "expected at least one entry")
    phrases = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise RobotTypeError(field_name, f"expected non-empty strings, got {excerpt(item)}")
        phrases.append(_text(field_name, item))
    return tuple(phrases)


def _text(field_name: str, value: str) -> str:
    """`value` with its whitespace runs made single spaces; control characters (escape codes, NUL) and invisible
    formatting ones (zero-width space, right-to-left override: a name that looks like another) are refused."""
    text = " ".join(value.split())
    found = _CONTROL.search(text)
    position = found.start() if found else None
    if position is None and not text.isascii():
        position = next((i for i, char in enumerate(text) if unicodedata.category(char) in ("Cc", "Cf")), None)
    if position is not None:
        raise RobotTypeError(field_name, f"control or formatting character U+{ord(text[position]):04X} at position "
                                         f"{position} of {excerpt(text)}; remove it")
    return text
