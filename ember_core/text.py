"""Task text normalisation shared by the training data, the scene rules and inference."""
from __future__ import annotations

import re

_TASK_PREFIX = re.compile(r"^\s*task\s*:\s*", re.IGNORECASE)
# Curly quotes and primes become straight ones, so "building’s" and "building's" are the same task.
_STRAIGHT = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                           "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'})


def normalise_task(text: str) -> str:
    """Task text without a leading "Task:", with straight quotes and single spaces."""
    return " ".join(_TASK_PREFIX.sub("", str(text).translate(_STRAIGHT)).split())
