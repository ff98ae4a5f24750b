"""Task text: normalisation shared by the training data and the scene rules, and the check of a request's task."""
from __future__ import annotations

import re
import unicodedata

from ember_core.errors import InvalidInputError

_TASK_PREFIX = re.compile(r"^\s*task\s*:\s*", re.IGNORECASE)
# Curly quotes and primes become straight ones, so "building’s" and "building's" are the same task.
_STRAIGHT = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                           "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'})


def normalise_task(text: str) -> str:
    """Task text without a leading "Task:", with straight quotes and single spaces."""
    return " ".join(_TASK_PREFIX.sub("", str(text).translate(_STRAIGHT)).split())


# Characters a task never needs: format characters (zero-width spaces and joiners, BOM, direction marks),
# private-use and unassigned code points. Control characters and line/paragraph separators become spaces.
_DROPPED = frozenset({"Cf", "Co", "Cn"})
_SPACES = frozenset({"Cc", "Zl", "Zp"})


def clean_task(task: object, max_chars: int) -> str:
    """A request's task text as the model reads it (NFC, invisible characters dropped, single spaces).

    Raises InvalidInputError, naming what to change, for anything that is not a task: not text, not
    valid Unicode (lone surrogates from undecodable bytes), empty or made of invisible characters or
    marks only (no letter or digit), or longer than `max_chars`.
    """
    if not isinstance(task, str):
        raise InvalidInputError(f"task must be text, got {type(task).__name__}")
    try:
        task.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidInputError(f"task is not valid Unicode text ({err.reason} at position {err.start}); "
                                f"send UTF-8 text") from None
    text = "".join(" " if unicodedata.category(c) in _SPACES else c
                   for c in unicodedata.normalize("NFC", task) if unicodedata.category(c) not in _DROPPED)
    text = " ".join(text.split())
    if not text:
        raise InvalidInputError("task is empty; describe what the robots should do")
    if not any(unicodedata.category(c)[0] in "LN" for c in text):
        raise InvalidInputError("task has no letters or digits; describe what the robots should do")
    if len(text) > max_chars:
        raise InvalidInputError(f"task is {len(text)} characters; the limit is {max_chars}")
    return text
