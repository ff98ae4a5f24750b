"""Checks of values read from a saved model's JSON files: each failure names the field and what it expects.

config.json (EmberVLMConfig) and processor_config.json (ProcessorConfig) hold values anyone can edit;
these checks turn a wrong type or range into a FieldError (a ValueError) whose message the loader
prefixes with the file, so `ember select --model DIR` prints one line that says what to fix.
"""
from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path
from typing import Any

from ember_core import safe_json
from ember_core.excerpt import excerpt

# A model directory's JSON files are small (fleet.json with every card's examples is ~20 KB); a bigger
# one is not a file Ember wrote, and is refused before it is parsed.
MAX_JSON_FILE_BYTES = 16 * 1024 * 1024
# A name or path in a config (a preset, an encoder, a weights directory).
MAX_TEXT_CHARS = 4096


class FieldError(ValueError):
    """A field of a JSON document has a wrong type or value; `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"field '{field_name}': {message}")
        self.field = field_name


def integer(name: str, value: Any, low: int, high: int | None = None) -> int:
    """`value` if it is an integer (not a bool, not 64.0) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(name, f"expected an integer, got {excerpt(value)} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise FieldError(name, f"expected an integer {bounds}, got {excerpt(value)}")
    return value


def number(name: str, value: Any, low: float, high: float, low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a float if it is a finite number (int or float, not a bool) in the given interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(name, f"expected a number, got {excerpt(value)} ({type(value).__name__})")
    try:
        result = float(value)
    except OverflowError:  # an integer beyond float range
        result = math.inf
    below = result <= low if low_open else result < low
    above = result >= high if high_open else result > high
    if not math.isfinite(result) or below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise FieldError(name, f"expected a finite number in {interval}, got {excerpt(value)}")
    return result


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError(name, f"expected true or false, got {excerpt(value)} ({type(value).__name__})")
    return value


def text(name: str, value: Any, optional: bool = False) -> str | None:
    """A non-empty string of at most MAX_TEXT_CHARS printable characters (or None when `optional`).

    Control characters are refused: these names reach logs, terminals and result documents.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        expected = "a non-empty string or null" if optional else "a non-empty string"
        raise FieldError(name, f"expected {expected}, got {excerpt(value)}")
    if len(value) > MAX_TEXT_CHARS:
        raise FieldError(name, f"{len(value)} characters, more than the {MAX_TEXT_CHARS} a name or path may have")
    control = next((char for char in value if unicodedata.category(char) == "Cc"), None)
    if control is not None:
        raise FieldError(name, f"control character U+{ord(control):04X} in {excerpt(value)}; remove it")
    return value


def string_list(name: str, value: Any) -> list[str]:
    """A JSON list (or tuple) of strings, without duplicates."""
    if not isinstance(value, (list, tuple)):
        raise FieldError(name, f"expected a list of strings, got {excerpt(value)} ({type(value).__name__})")
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise FieldError(name, f"expected strings, got {excerpt(item)} ({type(item).__name__})")
        if item in seen:
            raise FieldError(name, f"{excerpt(item)} is listed twice")
        seen.add(item)
    return list(value)


def known_keys(data: Any, known: set[str], what: str) -> dict[str, Any]:
    """`data` if it is a JSON object whose keys are all in `known`."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object of {what} fields, got {excerpt(data)} ({type(data).__name__})")
    unknown = sorted(excerpt(key) for key in data if key not in known)
    if unknown:
        raise ValueError(f"unknown {what} field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return data


def read_json(path: Path) -> Any:
    """The JSON document in `path`; FileNotFoundError or ValueError naming the file when it cannot be read.

    Parsed by `ember_core.safe_json` (nesting depth checked first; NaN and Infinity refused).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found; re-save the model with save_pretrained")
    size = path.stat().st_size
    if size > MAX_JSON_FILE_BYTES:
        raise ValueError(f"{path}: {size} bytes, more than the {MAX_JSON_FILE_BYTES} a model file may have")
    try:
        return safe_json.loads(path.read_bytes(), max_bytes=MAX_JSON_FILE_BYTES)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    except ValueError as err:  # not UTF-8, too deep, NaN, an integer of more than 4300 digits
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise ValueError(f"{path}: could not be read ({err.strerror or err})") from None
