"""A saved processor's files read field by field: processor_config.json values, the fleet.json record, and
their agreement with the model's config.json.

Both are JSON anyone can edit; a wrong value is a ValueError naming the file and the field, never a
processor that inverts the ranking (a negative calibration scale) or a fleet with duplicate robots.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ember_core import fields
from ember_core.calibration import Calibration
from ember_core.excerpt import excerpt
from ember_core.fields import FieldError
from ember_core.fleet import Fleet
from ember_core.model.config import GENERATION_MARKER_TOKENS, EmberVLMConfig
from ember_core.prompt import IMAGE_SLOTS
from ember_core.robot import RobotType

# Fields whose value is a count or size; the model's config pins the exact values (load_pretrained).
MAX_PROCESSOR_INT = 10_000_000


def processor_fields(data: Any, known: tuple[dataclasses.Field, ...]) -> dict[str, Any]:
    """The keyword arguments of a ProcessorConfig (its dataclass fields `known`), each checked.

    ValueError (FieldError for one field) for anything else: not a JSON object, an unknown or missing
    field, a count that is not a positive integer, a calibration that would invert the ranking. A model saved
    with one calibration `temperature` T (before the calibration object) reads as scale 1/T, one without
    `image_slots` (before the prompt could place the image after the cards) as "before_cards".
    """
    if isinstance(data, dict) and "temperature" in data and "calibration" not in data:
        data = {**data, "calibration": Calibration.from_temperature(data["temperature"])}
        del data["temperature"]
    if isinstance(data, dict) and "image_slots" not in data:
        data = {**data, "image_slots": "before_cards"}
    data = fields.known_keys(data, {field.name for field in known}, "processor config")
    for field in known:
        if field.name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise FieldError(field.name, "missing")
            continue
        value = data[field.name]
        kind = str(field.type).replace(" ", "")
        if field.name == "calibration":
            data[field.name] = value if isinstance(value, Calibration) else Calibration.from_record(value)
        elif kind == "int":
            fields.integer(field.name, value, 1, MAX_PROCESSOR_INT)
        elif kind == "float":
            fields.number(field.name, value, -1e9, 1e9)
        elif kind == "bool":
            fields.boolean(field.name, value)
        elif kind in ("str|None", "Optional[str]"):
            fields.text(field.name, value, optional=True)
        elif kind == "str":
            fields.text(field.name, value)
    if data["image_slots"] not in IMAGE_SLOTS:
        raise FieldError("image_slots", f"{excerpt(data['image_slots'])} is not one of {', '.join(IMAGE_SLOTS)}")
    return data


def fleet_from_record(record: Any) -> Fleet:
    """The Fleet of a fleet.json record {"ids": [...], "names": [...], "hash": ..., "robots": [card, ...]}.

    ValueError naming the field (`robots[2].capabilities`) when a card is invalid, two robots share an
    id or a name, or the record's `ids` list is not the cards' ids in order.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object with a 'robots' list, got {excerpt(record)} ({type(record).__name__})")
    robots = record.get("robots")
    if not isinstance(robots, list) or not robots:
        raise FieldError("robots", f"expected a non-empty list of robot cards, got {excerpt(robots)}")
    card_fields = {field.name for field in dataclasses.fields(RobotType)}
    cards = []
    for index, card in enumerate(robots):
        where = f"robots[{index}]"
        try:
            card = fields.known_keys(card, card_fields, "robot card")
            cards.append(RobotType(**card))
        except TypeError as err:  # a required card field is missing
            raise FieldError(where, str(err).replace("RobotType.__init__() ", "")) from None
        except ValueError as err:  # RobotTypeError names the card field
            field_name = getattr(err, "field", None)
            raise FieldError(f"{where}.{field_name}" if field_name else where,
                             str(err).split(": ", 1)[-1] if field_name else str(err)) from None
    try:
        fleet = Fleet(cards)
    except ValueError as err:  # two robots with one id or name
        raise FieldError("robots", str(err)) from None
    if "ids" in record and record["ids"] != fleet.ids:
        raise FieldError("ids", f"{excerpt(record['ids'])} is not the ids of the cards in 'robots' "
                                f"({', '.join(fleet.ids)}); the record was edited by hand")
    return fleet


def processor_matches_model(processor: Any, config: EmberVLMConfig, path: Path) -> None:
    """ValueError naming `path` (processor_config.json) when the processor would feed the model other
    inputs than it was built for: another image size, another number of image tokens, another sentence
    encoder, or a prompt longer than the model's context leaves room for beside the generated text."""
    expected = {"image_size": config.image_size, "image_tokens": config.image_tokens,
                "text_encoder": config.text_encoder}
    for name, value in expected.items():
        if getattr(processor, name) != value:
            raise ValueError(f"{path}: field '{name}': {excerpt(getattr(processor, name))} does not match the model "
                             f"({excerpt(value)}, from its config.json); re-save the model")
    room = config.lm_context - config.max_reasoning_tokens - config.max_plan_tokens - GENERATION_MARKER_TOKENS
    prompt = getattr(processor, "max_prompt_tokens", None)
    if prompt is not None and prompt > room:
        raise ValueError(f"{path}: field 'max_prompt_tokens': {prompt} is more than the model's lm_context "
                         f"{config.lm_context} leaves beside max_reasoning_tokens, max_plan_tokens and their "
                         f"markers ({room}); re-save the model")
