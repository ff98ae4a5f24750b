"""InvalidInputError: the one error type for a request Ember cannot run (light to import: no torch)."""
from __future__ import annotations


class InvalidInputError(ValueError):
    """A request the Selector cannot run: the message names the input and what to change."""
