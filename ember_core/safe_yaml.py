"""Read a YAML file from outside: size, nesting, aliases and duplicate keys are checked before anything is built.

`yaml.safe_load` builds no Python objects from tags, but it will expand an alias bomb (a few hundred
bytes that share one list a billion times), recurse until RecursionError on deep nesting, and let a
second `robots:` silently replace the first. Here the event stream is scanned first (nesting and
aliases, stopping at the first excess), then the node graph is measured with its aliases expanded
and its mappings checked for duplicate keys, and only then are Python objects built. Messages give
the line and a short excerpt, never the document.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ember_core.excerpt import describe_error, excerpt, printable
from ember_core.limits import MAX_YAML_ALIASES, MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

# libyaml's parser and composer are C: a 1 MB file loads in about 2 s, 13 s in pure Python.
_FastSafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class UnsafeYamlError(ValueError):
    """A YAML document that is too large, too deep, full of aliases, has a duplicate key or does not parse."""


class _Loader(_FastSafeLoader):  # type: ignore[misc, valid-type]
    """The safe loader, whose values that cannot be built (a date 2024-13-45, an int of 5000 digits) give their line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, UnsafeYamlError):
            raise
        except Exception as err:
            shown = f" {excerpt(node.value)}" if isinstance(node, yaml.ScalarNode) else ""
            raise UnsafeYamlError(f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}: the value"
                                  f"{shown} cannot be read: {describe_error(err)}") from err


def load_yaml_file(path: Path) -> Any:
    """The data of the YAML file at `path`, or UnsafeYamlError saying what is wrong (without the path)."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise UnsafeYamlError(_too_large(size))
        with open(path, "rb") as stream:
            raw = stream.read(MAX_YAML_BYTES + 1)
    except OSError as err:
        raise UnsafeYamlError(f"cannot be read: {err.strerror or describe_error(err)}") from err
    if len(raw) > MAX_YAML_BYTES:  # it grew since stat, or it is not a regular file
        raise UnsafeYamlError(_too_large(len(raw)))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UnsafeYamlError(f"not UTF-8 text: byte {raw[err.start]:#04x} at offset {err.start}; save the file as UTF-8") from err
    return load_yaml_text(text)


def load_yaml_text(text: str) -> Any:
    """The data of one YAML document, checked as `load_yaml_file` describes."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise UnsafeYamlError(_too_large(len(text.encode("utf-8", "surrogatepass"))))
    try:
        _check_events(text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_graph(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except UnsafeYamlError:
        raise
    except yaml.constructor.ConstructorError as err:  # valid YAML, but a tag such as !!python/object
        unknown_tag = "could not determine a constructor" in str(err.problem)
        hint = "; only plain strings, numbers, lists and mappings are read" if unknown_tag else ""
        raise UnsafeYamlError(f"{_marked(err)}{hint}") from err
    except yaml.MarkedYAMLError as err:
        if "maximum nesting depth" in str(err.problem):  # libyaml's own limit (1000), met while scanning ahead
            raise UnsafeYamlError(_too_deep(err.problem_mark.line if err.problem_mark else 0)) from err
        raise UnsafeYamlError(f"not valid YAML: {_marked(err)}") from err
    except yaml.reader.ReaderError as err:
        char = f"U+{err.character:04X}" if isinstance(err.character, int) else excerpt(err.character)
        raise UnsafeYamlError(f"not valid YAML: character {char} at offset {err.position}: {err.reason}") from err
    except yaml.YAMLError as err:
        raise UnsafeYamlError(f"not valid YAML: {describe_error(err)}") from err
    except Exception as err:  # not expected: _Loader names the values it cannot build
        raise UnsafeYamlError(f"cannot be read: {err.strerror or describe_error(err)}") from err


def _too_large(size: int) -> str:
    return (f"file is {size} bytes, above the limit of {MAX_YAML_BYTES} (ember_core.limits.MAX_YAML_BYTES); "
            "a robots.yaml is a few kilobytes")


def _too_deep(line: int) -> str:
    return (f"line {line + 1}: nested deeper than {MAX_YAML_DEPTH} levels (ember_core.limits.MAX_YAML_DEPTH); "
            "a robots.yaml needs four")


def _marked(err: yaml.MarkedYAMLError) -> str:
    """The problem and its line, without the snippet of the document PyYAML would print."""
    mark = err.problem_mark or err.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = " ".join(part for part in (err.context, err.problem) if part)
    return where + printable(problem or type(err).__name__, 160)


def _check_events(text: str) -> None:
    """Nesting depth and alias count from the event stream, stopping at the first excess (before anything is built)."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise UnsafeYamlError(_too_deep(event.start_mark.line))
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise UnsafeYamlError(
                    f"line {event.start_mark.line + 1}: more than {MAX_YAML_ALIASES} aliases (*name) "
                    "(ember_core.limits.MAX_YAML_ALIASES); write the values out instead")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_graph(root: yaml.Node) -> None:
    """Depth and value count with aliases expanded (an alias is the same node object), no alias inside
    itself, and no mapping that gives a key twice (checked before `<<` merge keys are applied)."""
    keys = yaml.constructor.SafeConstructor()
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order walk: an alias chain may be deeper than Python's recursion limit
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            kids = _children(node)
            size[key] = 1 + sum(size[id(kid)] for kid in kids)
            depth[key] = 1 + max((depth[id(kid)] for kid in kids), default=0)
            open_nodes.discard(key)
            line = node.start_mark.line + 1
            if depth[key] > MAX_YAML_DEPTH:
                raise UnsafeYamlError(f"line {line}: nested deeper than {MAX_YAML_DEPTH} levels once its aliases are "
                                      "expanded (ember_core.limits.MAX_YAML_DEPTH)")
            if size[key] > MAX_YAML_NODES:
                raise UnsafeYamlError(f"line {line}: holds more than {MAX_YAML_NODES} values once its aliases are expanded "
                                      "(an alias bomb?); a robots.yaml holds a few thousand")
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise UnsafeYamlError(f"line {node.start_mark.line + 1}: an alias refers to a value that contains it "
                                  "(a recursive structure); write the value out instead")
        if isinstance(node, yaml.MappingNode):
            _check_keys(node, keys)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node))


def _check_keys(node: yaml.MappingNode, keys: yaml.constructor.SafeConstructor) -> None:
    first: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue  # `<<: *base` then explicit keys: the explicit ones win, by design
        try:
            key = keys.construct_object(key_node, deep=True)
            hash(key)
        except Exception:  # a bad scalar fails again, with its line, when the document is built
            key = (key_node.tag, key_node.value)
        earlier = first.setdefault(key, key_node)
        if earlier is not key_node:
            raise UnsafeYamlError(
                f"line {key_node.start_mark.line + 1}: duplicate key {excerpt(key)} (first given on line "
                f"{earlier.start_mark.line + 1}); a mapping gives each key once, remove one of them")
