"""Short, bounded reprs of outside input for error and log messages: a message never echoes a whole document."""
from __future__ import annotations

import datetime
import reprlib
from typing import Any

MAX_EXCERPT_CHARS = 80

# Containers and scalars shown by reprlib (exact types only: a subclass may override __repr__ or
# __iter__), and scalars whose builtin repr is short; anything else shows as <type name>, so an
# object of a plugin with a slow or raising __repr__ never runs inside an error message.
_REPRLIB_TYPES = (str, int, list, tuple, dict, set, frozenset)
_PLAIN_TYPES = (bool, float, complex, type(None), datetime.date, datetime.datetime, datetime.time)


class _Excerpt(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict = 3, 4, 4, 4
        self.maxset, self.maxfrozenset, self.maxstring, self.maxother, self.maxlong = 4, 4, 60, 60, 40

    def repr1(self, x: Any, level: int) -> str:
        kind = type(x)
        if kind is int and x.bit_length() > 128:  # repr of a huge int is slow, and refused past 4300 digits
            return f"<int of {x.bit_length()} bits>"
        if kind in _REPRLIB_TYPES:
            return super().repr1(x, level)
        if kind in (bytes, bytearray):
            head = repr(bytes(x[: self.maxstring]))
            return head if len(x) <= self.maxstring else f"{head}... ({len(x)} bytes)"
        if kind in _PLAIN_TYPES:
            return repr(x)[: self.maxother]
        return f"<{kind.__name__}>"


_REPR = _Excerpt()


def excerpt(value: Any, limit: int = MAX_EXCERPT_CHARS) -> str:
    """A repr of `value` in at most `limit` characters, control characters escaped, that runs no outside code."""
    try:
        text = _REPR.repr(value)
    except Exception:  # e.g. a dict whose keys compare badly
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with control characters escaped (\\n, \\x1b), for one log line."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[: limit * 2])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_error(err: BaseException, limit: int = 160) -> str:
    """`TypeName: message` of an exception, the message cut to `limit` characters, for an error message."""
    try:
        if type(err).__str__ is BaseException.__str__:  # its args: a huge list in them is not rendered whole
            args = err.args
            if len(args) == 1:
                message = args[0] if type(args[0]) is str else excerpt(args[0])
            else:
                message = excerpt(args) if args else ""
        else:
            message = str(err)
    except Exception:  # an exception of a plugin whose __str__ raises
        message = ""
    message = printable(message, limit)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__
