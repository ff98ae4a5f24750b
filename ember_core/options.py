"""Command-line options generated from a dataclass, so a flag's type, choices and shown default cannot drift.

A field becomes `--<name>` with the help text and choices of its `option(...)` metadata and its
default shown from the dataclass. Flags left out parse as None, so a caller can layer values
(config file, then command line) and let the dataclass fill in the rest.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Sequence

MISSING = dataclasses.MISSING


def option(default: Any = MISSING, help: str = "", choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field that is also a command-line option (`help` and `choices` for argparse)."""
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None}
    return dataclasses.field(default=default, metadata=metadata)


def add_options(parser: argparse.ArgumentParser, cls: type, exclude: Sequence[str] = ()) -> None:
    """Add a `--<field>` option for every field of dataclass `cls` that has `option` metadata."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude or "help" not in field.metadata:
            continue
        kind = _scalar_type(hints[field.name], f"{cls.__name__}.{field.name}")
        help_text = field.metadata["help"]
        if field.default is not MISSING:
            help_text += f" (default: {field.default})"
        parser.add_argument(f"--{field.name}", type=kind, choices=field.metadata["choices"], default=None,
                            help=help_text, metavar=None if field.metadata["choices"] else field.name.upper())


def values_of(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` that were given on the command line (not None)."""
    names = {field.name for field in dataclasses.fields(cls)}
    return {key: value for key, value in vars(namespace).items() if key in names and value is not None}


def _scalar_type(hint: Any, where: str) -> type:
    """int, float or str of a hint such as `int` or `str | None`; bool is refused (argparse would take any text as True)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    if hint not in (int, float, str):
        raise TypeError(f"{where}: a command-line option must be int, float or str (or Optional of one), got {hint}")
    return hint
