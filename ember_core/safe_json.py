"""JSON from outside (topics, HTTP), parsed only after its size and nesting depth pass the limits.

json.loads recurses once per nesting level: a message of a few thousand brackets raises RecursionError
(not a ValueError) from deep inside the parser, and a callback that lets it through takes a ROS node
down. So the depth is measured first, by a linear scan that skips string contents, and refused with a
ValueError that names the limit.
"""
from __future__ import annotations

import json
import re
from typing import Any

from ember_core.limits import MAX_JSON_BYTES, MAX_JSON_DEPTH

# A complete JSON string (escapes included), written as an unrolled loop so the regex never backtracks.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def loads(text: str | bytes, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads for untrusted text: ValueError (naming the limit) when it is over `max_bytes` bytes in
    UTF-8, nested deeper than `max_depth`, not UTF-8 (bytes), not JSON, or carrying NaN, Infinity or an
    unpaired surrogate (\\ud800), which no consumer can encode again."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        size = len(text)
        _check_size(size, max_bytes)
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"JSON is not valid UTF-8 ({err}); send UTF-8 text") from err
    elif isinstance(text, str):
        _check_size(len(text), max_bytes)  # each character is a byte or more: refuse huge text before encoding it
        _check_size(len(text.encode("utf-8", "surrogatepass")), max_bytes)
    else:
        raise TypeError(f"JSON must be str or bytes, got {type(text).__name__}")
    openers = text.count("[") + text.count("{")  # no deeper than its openers: most documents skip the scan
    if openers > max_depth and nesting_depth(text, stop_above=max_depth) > max_depth:
        raise ValueError(f"JSON nests more than {max_depth} levels deep, over the limit (MAX_JSON_DEPTH in "
                         "ember_core/limits.py); send a flatter document")
    value = json.loads(text, parse_constant=_refuse_constant)
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"JSON has a string with an unpaired surrogate ({err.object[err.start:err.end]!r}); "
                         "send valid Unicode") from err
    return value


def nesting_depth(text: str, stop_above: int | None = None) -> int:
    """How deep arrays and objects nest in `text`, brackets inside strings not counted; linear, never recursive.

    With `stop_above`, counting stops as soon as the depth passes it (the return value is then
    stop_above + 1). Text after an unterminated string is not counted: the parser refuses it anyway.
    """
    outside_strings = _STRING.sub("", text).split('"', 1)[0]
    depth = deepest = 0
    for bracket in _NOT_BRACKET.sub("", outside_strings):
        depth += 1 if bracket in "[{" else -1
        if depth > deepest:
            deepest = depth
            if stop_above is not None and deepest > stop_above:
                break
    return deepest


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValueError(f"JSON is {size:,} bytes or more, over the {max_bytes:,} byte limit (MAX_JSON_BYTES in "
                         "ember_core/limits.py); send a smaller document")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"JSON has {name}, which is not JSON; send a number or null")
