"""The selection document (ember.selection/1) as the typed message ember_msgs/Selection, and back.

The message has the document's field names (a test walks the JSON Schema against the message
definitions), so one rule converts either way, field by field, driven by the message's own field
types. Where JSON has null, the message has an empty value: "" for a string, NaN for a number, a zero
time for a stamp, and an empty bounded sequence (`X[<=1]`) for an object. Reading a message back,
the schema says which fields may be null, so those empty values become null again. The message adds
one field of its own, `header`: the camera image's header, or the request time when text-only.
"""
from __future__ import annotations

import functools
import importlib
import json
import math
import re
from typing import Any

import rclpy.time
from builtin_interfaces.msg import Time
from ember_msgs.msg import Selection as SelectionMessage
from std_msgs.msg import Header

from ember_core.selection import SCHEMA_PATH

TIME = "builtin_interfaces/Time"
_SEQUENCE = re.compile(r"^sequence<(.+?)(?:, (\d+))?>$")
_NUMBERS = ("double", "float")


def to_message(document: dict[str, Any], header: Header) -> SelectionMessage:
    """The typed message of a selection document, stamped with `header`."""
    message = _message(SelectionMessage, document, skip=("header",))
    message.header = header
    return message


def to_document(message: SelectionMessage) -> dict[str, Any]:
    """The selection document a typed message carries (its header aside)."""
    return _document(message, _schema(), skip=("header",))


def time_to_seconds(stamp: Time) -> float:
    return rclpy.time.Time.from_msg(stamp).nanoseconds / 1e9


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def message_class(kind: str) -> type:
    """The Python class of a message type name such as 'ember_msgs/Candidate'."""
    package, name = kind.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _message(cls: type, values: dict[str, Any], skip: tuple[str, ...] = ()) -> Any:
    message = cls()
    for name, kind in cls.get_fields_and_field_types().items():
        if name not in skip:
            setattr(message, name, _to_field(kind, values[name]))
    return message


def _to_field(kind: str, value: Any) -> Any:
    sequence = _SEQUENCE.match(kind)
    if sequence:
        items = [] if value is None else [value] if isinstance(value, dict) else value
        return [_to_field(sequence[1], item) for item in items]
    if kind == TIME:
        return Time() if value is None else rclpy.time.Time(seconds=value).to_msg()
    if "/" in kind:
        return _message(message_class(kind), value)
    if kind in _NUMBERS:
        return math.nan if value is None else float(value)
    if kind == "string":
        return "" if value is None else value
    return value


def _document(message: Any, schema: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    properties = schema["properties"]
    return {name: _from_field(kind, getattr(message, name), properties[name])
            for name, kind in type(message).get_fields_and_field_types().items() if name not in skip}


def resolve(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A property's schema with $ref and a null alternative taken out, and whether it may be null."""
    nullable = False
    if "oneOf" in schema:
        options = [option for option in schema["oneOf"] if option.get("type") != "null"]
        nullable, schema = len(options) < len(schema["oneOf"]), options[0]
    if "$ref" in schema:
        schema = _schema()["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    types = schema.get("type")
    if isinstance(types, list) and "null" in types:
        nullable = True
    return schema, nullable


def _from_field(kind: str, value: Any, schema: dict[str, Any]) -> Any:
    schema, nullable = resolve(schema)
    sequence = _SEQUENCE.match(kind)
    if sequence and sequence[2] == "1" and "properties" in schema:  # an object that may be absent
        return _from_field(sequence[1], value[0], schema) if len(value) else None
    if sequence:
        items = [_from_field(sequence[1], item, schema.get("items", {})) for item in value]
        return None if nullable and not items else items
    if kind == TIME:
        return None if nullable and not (value.sec or value.nanosec) else time_to_seconds(value)
    if "/" in kind:
        return _document(value, schema)
    if kind in _NUMBERS:
        return None if nullable and math.isnan(value) else float(value)
    if kind == "string":
        return None if nullable and not value else value
    return value
