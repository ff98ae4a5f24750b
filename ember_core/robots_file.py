"""Build the Fleet from robots.yaml: find the file, load the plugins it names, validate every card."""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from pathlib import Path
from typing import Any

import pluggy
import yaml

from ember_core.fleet import Fleet, new_plugin_manager
from ember_core.hookspecs import ENTRY_POINT_GROUP
from ember_core.paths import share_dir
from ember_core.robot import RobotType, RobotTypeError

ENV_VAR = "EMBER_ROBOTS"
ENTRY_KEYS = {"plugin", "robot", "overrides"}


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
    if not chosen.is_file():
        raise FleetConfigError(f"{chosen}: robots file not found (from {origin})")
    return chosen.resolve()


def load_fleet(path: str | os.PathLike | None = None) -> Fleet:
    """Load the fleet named by robots.yaml (see `find_robots_file` for which file is used)."""
    robots_file = find_robots_file(path)
    entries = _read_entries(robots_file)
    manager = new_plugin_manager()
    robots: list[RobotType] = []
    seen: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"{robots_file}: entry {number} (plugin '{entry['plugin']}')"
        plugin = _load_plugin(entry["plugin"], robots_file.parent, where)
        if not manager.is_registered(plugin):
            _register(manager, plugin, entry["plugin"], where)
        robot = _pick_robot(manager, plugin, entry, where)
        if robot.id in seen:
            raise FleetConfigError(f"{where}: field 'id': duplicate robot id '{robot.id}', already given by {seen[robot.id]}")
        seen[robot.id] = f"entry {number} (plugin '{entry['plugin']}')"
        robots.append(robot)
    try:
        return Fleet(robots, manager)
    except ValueError as err:
        raise FleetConfigError(f"{robots_file}: {err}") from err


def _read_entries(robots_file: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(robots_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise FleetConfigError(f"{robots_file}: not valid YAML: {err}") from err
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
            raise FleetConfigError(f"{where}: expected a mapping with a 'plugin' string, got {entry!r}")
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise FleetConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(ENTRY_KEYS)}")
        if not isinstance(entry.get("overrides", {}), dict):
            raise FleetConfigError(f"{where}: field 'overrides': expected a mapping of card fields")
    return entries


def _load_plugin(spec: str, robots_dir: Path, where: str) -> Any:
    """An entry point of group `ember.robots` named `spec`, else the module `spec`.

    The directory of robots.yaml is searched for modules too, so a plugin file can sit next to it.
    """
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name == spec:
            try:
                return entry_point.load()
            except Exception as err:
                raise FleetConfigError(f"{where}: entry point '{entry_point.value}' failed to load: {err!r}") from err
    sys.path.insert(0, str(robots_dir))
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as err:
        if err.name and spec.startswith(err.name) and spec[len(err.name):len(err.name) + 1] in ("", "."):
            installed = sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
            raise FleetConfigError(
                f"{where}: unknown plugin: no entry point '{spec}' in group '{ENTRY_POINT_GROUP}' "
                f"(installed: {', '.join(installed) or 'none'}) and no importable module '{spec}'"
            ) from err
        raise FleetConfigError(f"{where}: plugin module failed to import: {err!r}") from err
    except Exception as err:
        raise FleetConfigError(f"{where}: plugin module failed to import: {err!r}") from err
    finally:
        sys.path.remove(str(robots_dir))


def _register(manager: pluggy.PluginManager, plugin: Any, spec: str, where: str) -> None:
    try:
        manager.register(plugin, name=spec)
        manager.check_pending()
    except pluggy.PluginValidationError as err:
        hooks = ", ".join(sorted(name for name, caller in vars(manager.hook).items() if caller.spec))
        raise FleetConfigError(f"{where}: {err} (known hooks: {hooks}; check the spelling)") from err


def _pick_robot(manager: pluggy.PluginManager, plugin: Any, entry: dict, where: str) -> RobotType:
    others = [p for p in manager.get_plugins() if p is not plugin]
    caller = manager.subset_hook_caller("ember_robot_types", remove_plugins=others)
    try:
        results = caller()
    except RobotTypeError as err:
        raise FleetConfigError(f"{where}: {err}") from err
    if not all(isinstance(result, (list, tuple)) for result in results):
        raise FleetConfigError(f"{where}: 'ember_robot_types' must return a list of RobotType, got {results!r}")
    declared = [robot for result in results for robot in result]
    if not declared:
        raise FleetConfigError(f"{where}: the plugin declares no robot types (implement the 'ember_robot_types' hook)")
    for robot in declared:
        if not isinstance(robot, RobotType):
            raise FleetConfigError(f"{where}: 'ember_robot_types' must return RobotType objects, got {robot!r}")
    if "robot" in entry:
        matches = [robot for robot in declared if robot.id == entry["robot"]]
        if not matches:
            ids = ", ".join(robot.id for robot in declared)
            raise FleetConfigError(f"{where}: field 'robot': the plugin has no robot '{entry['robot']}' (it has: {ids})")
        robot = matches[0]
    elif len(declared) > 1:
        ids = ", ".join(robot.id for robot in declared)
        raise FleetConfigError(f"{where}: the plugin declares several robots ({ids}); name one with 'robot: ID'")
    else:
        robot = declared[0]
    try:
        return robot.with_overrides(entry.get("overrides", {}))
    except (RobotTypeError, TypeError) as err:
        raise FleetConfigError(f"{where}: overrides: {err}") from err

