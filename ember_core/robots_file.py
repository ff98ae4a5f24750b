"""Build the Fleet from robots.yaml: find the file, load the plugins it names, validate every card.

robots.yaml is read by `ember_core.safe_yaml` (size, nesting, alias and duplicate-key limits). A plugin
is an entry point of the group `ember.robots`, an installed module, or a module or package next to
robots.yaml; the last is loaded from its file without putting its directory on sys.path, and only when
no installed or standard-library module has its name, so a folder `ember_plugins/` or a `colorsys.py`
beside robots.yaml replaces nothing. Whatever a plugin raises while it loads (SystemExit too) becomes
a FleetConfigError naming the file, the entry and the plugin.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pluggy

from ember_core.excerpt import describe_error, excerpt, printable
from ember_core.fleet import Fleet, new_plugin_manager
from ember_core.hook_calls import call_one
from ember_core.hookspecs import ENTRY_POINT_GROUP
from ember_core.limits import HOOK_TIME_BUDGET_S
from ember_core.paths import share_dir
from ember_core.robot import RobotType, RobotTypeError
from ember_core.safe_yaml import UnsafeYamlError, load_yaml_file

log = logging.getLogger(__name__)

ENV_VAR = "EMBER_ROBOTS"
ENTRY_KEYS = {"plugin", "robot", "overrides"}
# A module path: dotted ASCII identifiers. An entry point name may be anything its distribution chose.
MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# Longer names are refused before any lookup: the file system refuses them anyway ("File name too long").
MAX_PLUGIN_CHARS = 200
# Set on a module loaded from a file next to robots.yaml: the directory it came from.
LOCAL_PLUGIN_MARK = "__ember_plugin_dir__"


class FleetConfigError(ValueError):
    """robots.yaml or a plugin it names is wrong; the message names the file, the plugin and the field."""


def find_robots_file(path: str | os.PathLike | None = None) -> Path:
    """The robots.yaml to use: `path`, else $EMBER_ROBOTS, else ./robots.yaml, else the packaged default."""
    if path is not None:
        chosen, origin = Path(path), "the given path"
    elif os.environ.get(ENV_VAR):
        chosen, origin = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    elif Path("robots.yaml").is_file():
        return Path("robots.yaml").resolve()
    else:
        chosen, origin = share_dir() / "robots.yaml", "the packaged default"
    try:
        found = chosen.is_file()
    except (OSError, ValueError) as err:  # a name too long, a NUL byte in it
        reason = getattr(err, "strerror", None) or describe_error(err)  # strerror: without the name again
        raise FleetConfigError(f"{printable(str(chosen), 200)}: robots file cannot be opened (from {origin}): "
                               f"{reason}") from err
    if not found:
        raise FleetConfigError(f"{printable(str(chosen), 200)}: robots file not found (from {origin})")
    return chosen.resolve()


def load_fleet(path: str | os.PathLike | None = None) -> Fleet:
    """Load the fleet named by robots.yaml (see `find_robots_file` for which file is used)."""
    robots_file = find_robots_file(path)
    entries = _read_entries(robots_file)
    manager = new_plugin_manager()
    robots: list[RobotType] = []
    seen: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        named = f"entry {number} (plugin '{printable(entry['plugin'], 80)}')"
        where = f"{robots_file}: {named}"
        plugin = _load_plugin(entry["plugin"], robots_file.parent, where)
        _register(manager, plugin, entry["plugin"], where)
        robot = _pick_robot(manager, plugin, entry, where)
        if robot.id in seen:
            raise FleetConfigError(f"{where}: field 'id': duplicate robot id '{robot.id}', already given by {seen[robot.id]}")
        seen[robot.id] = named
        robots.append(robot)
    try:
        return Fleet(robots, manager)
    except ValueError as err:
        raise FleetConfigError(f"{robots_file}: {err}") from err


def _read_entries(robots_file: Path) -> list[dict[str, Any]]:
    try:
        data = load_yaml_file(robots_file)
    except UnsafeYamlError as err:
        raise FleetConfigError(f"{robots_file}: {err}") from err
    if not isinstance(data, dict) or set(data) != {"robots"}:
        raise FleetConfigError(f"{robots_file}: expected a mapping with the single key 'robots' (a list of entries)")
    entries = data["robots"]
    if not isinstance(entries, list) or not entries:
        raise FleetConfigError(f"{robots_file}: 'robots' must be a non-empty list of entries")
    for number, entry in enumerate(entries, start=1):
        where = f"{robots_file}: entry {number}"
        if isinstance(entry, str):
            entry = entries[number - 1] = {"plugin": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("plugin"), str) or not entry["plugin"].strip():
            raise FleetConfigError(f"{where}: expected a mapping with a 'plugin' string, got {excerpt(entry)}")
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            shown = sorted(excerpt(key, 40) for key in unknown)
            raise FleetConfigError(f"{where}: unknown key(s) [{', '.join(shown[:5])}{', ...' if len(shown) > 5 else ''}]; "
                                   f"allowed: {sorted(ENTRY_KEYS)}")
        if not isinstance(entry.get("overrides", {}), dict):
            raise FleetConfigError(f"{where}: field 'overrides': expected a mapping of card fields, got {excerpt(entry['overrides'])}")
    return entries


def _load_plugin(spec: str, robots_dir: Path, where: str) -> Any:
    """An entry point of group `ember.robots` named `spec`, else the installed module `spec`, else the
    module or package `spec` next to robots.yaml (see the module docstring for why it is loaded so)."""
    if len(spec) > MAX_PLUGIN_CHARS:
        raise FleetConfigError(f"{where}: field 'plugin': {excerpt(spec)} is longer than {MAX_PLUGIN_CHARS} characters; "
                               "name a module path such as 'ember_plugins.drone' or an entry point")
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name == spec:
            return _guarded(entry_point.load, where, f"entry point '{entry_point.value}' failed to load")
    if not MODULE_PATH.fullmatch(spec):
        raise FleetConfigError(f"{where}: field 'plugin': {excerpt(spec)} is neither an entry point of the group "
                               f"'{ENTRY_POINT_GROUP}' nor a module path such as 'ember_plugins.drone'")
    top = spec.partition(".")[0]
    local = _local_file(robots_dir, top)
    if _installed(top):
        if local is not None:
            log.warning("%s: %s is ignored: '%s' is an installed or standard-library module, which comes first; "
                        "rename the file to use it", where, local, top)
    elif local is not None:
        _guarded(lambda: _load_local(top, local, robots_dir), where, "plugin module failed to import")
    return _guarded(lambda: _import(spec, where), where, "plugin module failed to import")


def _import(spec: str, where: str) -> Any:
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as err:
        if err.name and spec.startswith(err.name) and spec[len(err.name):len(err.name) + 1] in ("", "."):
            installed = sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
            raise FleetConfigError(
                f"{where}: unknown plugin: no entry point '{spec}' in group '{ENTRY_POINT_GROUP}' "
                f"(installed: {', '.join(installed) or 'none'}) and no importable module '{spec}', "
                "installed or next to robots.yaml"
            ) from err
        raise


def _guarded(load: Callable[[], Any], where: str, what: str) -> Any:
    """`load()`, with anything it raises but KeyboardInterrupt (SystemExit too) made a FleetConfigError."""
    try:
        return load()
    except (KeyboardInterrupt, FleetConfigError):
        raise
    except BaseException as err:
        hint = "; a plugin must not exit the process" if isinstance(err, SystemExit) else ""
        raise FleetConfigError(f"{where}: {what}: {describe_error(err)}{hint}") from err


def _installed(top: str) -> bool:
    """Whether `top` is a top-level module Python finds without robots.yaml's directory (stdlib or installed)."""
    module = sys.modules.get(top)
    if module is not None:
        return not hasattr(module, LOCAL_PLUGIN_MARK)
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return True  # unsure: never let a local file take the name


def _local_file(robots_dir: Path, top: str) -> Path | None:
    """The package `top/__init__.py` or module `top.py` next to robots.yaml, the package first as Python does."""
    for candidate in (robots_dir / top / "__init__.py", robots_dir / f"{top}.py"):
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # unreadable directory: as if the file were not there
            continue
    return None


def _load_local(top: str, path: Path, robots_dir: Path) -> None:
    """Load `path` as the top-level module `top` into sys.modules, unless it is loaded from this directory already."""
    module = sys.modules.get(top)
    if module is not None and getattr(module, LOCAL_PLUGIN_MARK, None) == str(robots_dir):
        return
    for name in [name for name in sys.modules if name == top or name.startswith(top + ".")]:
        del sys.modules[name]  # a plugin of the same name next to another robots.yaml loaded before
    package = [str(path.parent)] if path.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(top, path, submodule_search_locations=package)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a module")
    module = importlib.util.module_from_spec(spec)
    setattr(module, LOCAL_PLUGIN_MARK, str(robots_dir))
    sys.modules[top] = module  # before it runs, as an import does: dataclasses and relative imports look it up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(top, None)
        raise


def _register(manager: pluggy.PluginManager, plugin: Any, spec: str, where: str) -> None:
    """Register `plugin` under the name `spec`, unless an earlier entry registered it already."""
    try:
        if manager.is_registered(plugin):
            return
        manager.register(plugin, name=spec)
        manager.check_pending()
    except pluggy.PluginValidationError as err:
        hooks = ", ".join(sorted(name for name, caller in vars(manager.hook).items() if caller.spec))
        raise FleetConfigError(f"{where}: {printable(str(err), 300)} "
                               f"(known hooks: {hooks}; check the spelling)") from err
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # e.g. a plugin object whose attributes raise when pluggy looks for hooks
        raise FleetConfigError(f"{where}: the plugin cannot be registered: {describe_error(err)}") from err


def _pick_robot(manager: pluggy.PluginManager, plugin: Any, entry: dict, where: str) -> RobotType:
    call = call_one(manager, "ember_robot_types", plugin)
    if call.seconds > HOOK_TIME_BUDGET_S:
        log.warning("%s: hook 'ember_robot_types' took %.2f s, above the budget of %g s "
                    "(ember_core.limits.HOOK_TIME_BUDGET_S); loading the fleet waits for it", where, call.seconds,
                    HOOK_TIME_BUDGET_S)
    if isinstance(call.error, RobotTypeError):
        raise FleetConfigError(f"{where}: {call.error}") from call.error
    if call.error is not None:
        raise FleetConfigError(f"{where}: hook 'ember_robot_types' raised {describe_error(call.error)}") from call.error
    results = call.results
    if not all(isinstance(result, (list, tuple)) for result in results):
        raise FleetConfigError(f"{where}: 'ember_robot_types' must return a list of RobotType, got {excerpt(results)}")
    declared = [robot for result in results for robot in result]
    if not declared:
        raise FleetConfigError(f"{where}: the plugin declares no robot types (implement the 'ember_robot_types' hook)")
    for robot in declared:
        if not isinstance(robot, RobotType):
            raise FleetConfigError(f"{where}: 'ember_robot_types' must return RobotType objects, got {excerpt(robot)}")
    if "robot" in entry:
        matches = [robot for robot in declared if robot.id == entry["robot"]]
        if not matches:
            ids = ", ".join(robot.id for robot in declared)
            raise FleetConfigError(f"{where}: field 'robot': the plugin has no robot {excerpt(entry['robot'])} (it has: {ids})")
        robot = matches[0]
    elif len(declared) > 1:
        ids = ", ".join(robot.id for robot in declared)
        raise FleetConfigError(f"{where}: the plugin declares several robots ({ids}); name one with 'robot: ID'")
    else:
        robot = declared[0]
    try:
        return robot.with_overrides(entry.get("overrides", {}))
    except (ValueError, TypeError) as err:
        raise FleetConfigError(f"{where}: overrides: {err}") from err
