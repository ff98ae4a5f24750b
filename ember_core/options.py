"""Command-line options generated from a dataclass, so a flag's type, choices and shown default cannot drift.

A field becomes `--<name>` (and `--<name-with-dashes>`) with the help text and choices of its
`option(...)` metadata and its default shown from the dataclass; a bool field becomes a switch,
`--<name>` / `--no-<name>`. Flags left out parse as None, so a caller can layer values (config file,
then command line) and let the dataclass fill in the rest; `config_values` checks and converts a
config file's values the way the flags convert theirs.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Mapping, Sequence

MISSING = dataclasses.MISSING


def option(default: Any = MISSING, help: str = "", choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field that is also a command-line option (`help` and `choices` for argparse)."""
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None}
    return dataclasses.field(default=default, metadata=metadata)


def add_options(parser: argparse.ArgumentParser, cls: type, exclude: Sequence[str] = ()) -> None:
    """Add a `--<field>` option for every field of dataclass `cls` that has `option` metadata."""
    for field, kind in _option_fields(cls):
        if field.name in exclude:
            continue
        help_text = field.metadata["help"]
        if field.default is not MISSING:
            help_text += f" (default: {field.default})"
        spellings = list(dict.fromkeys([f"--{field.name}", f"--{field.name.replace('_', '-')}"]))
        if kind is bool:
            parser.add_argument(*spellings, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(*spellings, dest=field.name, type=kind, choices=field.metadata["choices"], default=None,
                                help=help_text, metavar=None if field.metadata["choices"] else field.name.upper())


def values_of(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` that were given on the command line (not None)."""
    names = {field.name for field in dataclasses.fields(cls)}
    return {key: value for key, value in vars(namespace).items() if key in names and value is not None}


def config_values(values: Mapping[str, Any], cls: type, where: str) -> dict[str, Any]:
    """The options of `cls` in a config file's mapping, each converted as its flag would convert it.

    Keys are the flag names without the leading dashes (`batch_size` or `batch-size`); a null value
    leaves the default. ValueError naming `where` and the key for an unknown key, a value of the
    wrong type (`2e-4` is read as text by YAML and taken as the float it spells) or outside the choices.
    """
    kinds = {field.name: (kind, field.metadata["choices"]) for field, kind in _option_fields(cls)}
    converted = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in kinds:
            raise ValueError(f"{where}: unknown key {key!r}; the keys are the flag names, e.g. batch_size "
                             f"(see `ember train --help`)")
        if value is None:
            continue
        kind, choices = kinds[name]
        converted[name] = _convert(value, kind, f"{where}: {key}")
        if choices is not None and converted[name] not in choices:
            raise ValueError(f"{where}: {key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return converted


def _convert(value: Any, kind: type, where: str) -> Any:
    """`value` as `kind` (bool, int, float or str); ValueError naming `where` when it is not one."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if isinstance(value, (bool, list, dict)) or (kind is int and isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{where} must be a {kind.__name__}, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a {kind.__name__}, got {value!r}") from None


def _option_fields(cls: type) -> list[tuple[dataclasses.Field, type]]:
    """The fields of `cls` that are options, each with the scalar type its flag parses."""
    hints = typing.get_type_hints(cls)
    return [(field, _scalar_type(hints[field.name], f"{cls.__name__}.{field.name}"))
            for field in dataclasses.fields(cls) if "help" in field.metadata]


def _scalar_type(hint: Any, where: str) -> type:
    """bool, int, float or str of a hint such as `int` or `str | None` (a bool becomes a switch, never `type=bool`,
    with which argparse would take any text as True)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    if hint not in (bool, int, float, str):
        raise TypeError(f"{where}: a command-line option must be bool, int, float or str (or Optional of one), got {hint}")
    return hint
