"""Loading robots.yaml: lookup order, plugins by module path and by entry point, overrides, errors, limits.

The known-bad files of issue 12 (alias bomb, deep nesting, shadowing plugins...) are the corpus of
tests/test_fuzz_fleet.py; here are the rules around them.
"""
from __future__ import annotations

import importlib
import logging
import re
import sys
from pathlib import Path

import pytest

from conftest import REPO, SNAKE_PLUGIN
from ember_core import FleetConfigError, TaskContext, find_robots_file, load_fleet
from ember_core.cli import main
from ember_core.limits import HOOK_TIME_BUDGET_S, MAX_YAML_BYTES
from ember_core.prompt import fleet_text


def test_lookup_order_is_argument_then_env_then_cwd_then_packaged(tmp_path, monkeypatch, write_robots, default_robots_lines):
    explicit = write_robots(default_robots_lines[:1], "explicit.yaml")
    from_env = write_robots(default_robots_lines[:2], "env.yaml")
    in_cwd = write_robots(default_robots_lines[:3])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("EMBER_ROBOTS", raising=False)
    assert find_robots_file() == (REPO / "robots.yaml").resolve()
    monkeypatch.chdir(tmp_path)
    assert find_robots_file() == in_cwd
    monkeypatch.setenv("EMBER_ROBOTS", str(from_env))
    assert find_robots_file() == from_env
    assert find_robots_file(explicit) == explicit
    assert load_fleet(explicit).num_robots == 1 and load_fleet().num_robots == 2


def test_missing_file_says_where_the_path_came_from(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_ROBOTS", str(tmp_path / "nope.yaml"))
    with pytest.raises(FleetConfigError, match=r"nope.yaml: robots file not found \(from \$EMBER_ROBOTS\)"):
        load_fleet()


def test_sixth_robot_from_a_module_next_to_robots_yaml(write_plugin, write_robots, default_robots_lines):
    write_plugin("snake_robot", SNAKE_PLUGIN)
    fleet = load_fleet(write_robots(default_robots_lines + ["  - plugin: snake_robot"]))
    assert fleet.num_robots == 6
    assert fleet.ids[-1] == "snake_robot" and fleet.index("Snake Robot") == 5
    assert "Snake Robot:\ncapabilities: pipe navigation, confined space access, climbing," in fleet_text(fleet)


def test_nothing_loads_that_robots_yaml_does_not_name(write_robots, default_robots_lines):
    fleet = load_fleet(write_robots([default_robots_lines[3], default_robots_lines[0]]))
    assert fleet.ids == ["robot_with_wheels", "drone"]


def _install_entry_point_distribution(site: Path) -> None:
    """A tiny installed distribution with an `ember.robots` entry point, found by importlib.metadata."""
    (site / "ember_snake_pkg").mkdir(parents=True)
    (site / "ember_snake_pkg" / "__init__.py").write_text(SNAKE_PLUGIN)
    info = site / "ember_snake_pkg-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ember-snake-pkg\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[ember.robots]\nsnake = ember_snake_pkg\n")


def test_plugin_from_an_installed_entry_point(tmp_path, monkeypatch, write_robots, default_robots_lines):
    _install_entry_point_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fleet = load_fleet(write_robots(default_robots_lines + ["  - plugin: snake"]))
    assert fleet.num_robots == 6 and fleet.ids[-1] == "snake_robot"


def test_overrides_replace_card_fields(write_robots):
    path = write_robots([
        "  - plugin: ember_plugins.drone",
        "    overrides: {payload_kg: 2.5, environments: [outdoor, orchards]}",
    ])
    drone = load_fleet(path).robot("drone")
    assert drone.payload_kg == 2.5 and drone.environments == ("outdoor", "orchards")
    assert drone.capabilities[0] == "fastest"


def test_overrides_set_the_scene_rules(write_robots):
    path = write_robots([
        "  - plugin: ember_plugins.drone",
        "    overrides: {excluded_scenes: [underwater, indoor]}",
        "  - plugin: ember_plugins.humanoid",
        "    overrides: {excluded_scenes: []}",
        "  - plugin: ember_plugins.robot_with_wheels",
        "    overrides: {excluded_scenes: [], required_scenes: [indoor]}",
    ])
    fleet = load_fleet(path)
    assert fleet.robot("drone").excluded_scenes == ("underwater", "indoor")
    assert fleet.infeasible(TaskContext(task="x", scene=frozenset({"indoor"}))) == {"drone": ["Drone cannot operate indoors"]}
    assert fleet.infeasible(TaskContext(task="x", scene=frozenset({"underwater"}))) == {
        "drone": ["Drone cannot operate under water"],
        "robot_with_wheels": ["Robot with Wheels operates only indoors and the scene shows none of that"],
    }


def test_a_plugin_with_several_robots_is_picked_by_id(write_plugin, write_robots):
    write_plugin("two_arms", '''
        from ember_core import RobotType, hookimpl
        CARD = dict(description="Arm.", capabilities=["grasp"], limitations=["fixed base"], environments=["factory"])

        @hookimpl
        def ember_robot_types():
            return [RobotType(id="left_arm", name="Left Arm", **CARD), RobotType(id="right_arm", name="Right Arm", **CARD)]
    ''')
    fleet = load_fleet(write_robots(["  - {plugin: two_arms, robot: right_arm}", "  - {plugin: two_arms, robot: left_arm}"]))
    assert fleet.ids == ["right_arm", "left_arm"]
    with pytest.raises(FleetConfigError, match=r"entry 1 \(plugin 'two_arms'\): the plugin declares several robots"):
        load_fleet(write_robots(["  - plugin: two_arms"]))
    with pytest.raises(FleetConfigError, match=r"field 'robot': the plugin has no robot 'middle_arm' \(it has: left_arm, right_arm\)"):
        load_fleet(write_robots(["  - {plugin: two_arms, robot: middle_arm}"]))


BAD_PLUGINS = {
    "misspelled hook": (
        "from ember_core import hookimpl\n@hookimpl\ndef ember_robot_typez():\n    return []\n",
        r"unknown hook 'ember_robot_typez'.*\(known hooks: ember_robot_infeasible, ember_robot_types; check the spelling\)",
    ),
    "wrong hook arguments": (
        "from ember_core import hookimpl\n@hookimpl\ndef ember_robot_infeasible(robot, weather):\n    return None\n",
        r"weather",
    ),
    "no robot types": (
        "X = 1\n",
        r"declares no robot types \(implement the 'ember_robot_types' hook\)",
    ),
    "invalid card": (
        "from ember_core import RobotType, hookimpl\n@hookimpl\ndef ember_robot_types():\n"
        "    return [RobotType(id='cart', name='Cart', description='c', capabilities='carry',"
        " limitations=['slow'], environments=['indoor'])]\n",
        r"field 'capabilities': expected a list of strings",
    ),
    "returns a card, not a list": (
        "from ember_plugins.drone import DRONE\nfrom ember_core import hookimpl\n"
        "@hookimpl\ndef ember_robot_types():\n    return DRONE\n",
        r"must return a list of RobotType",
    ),
    "import error inside the plugin": (
        "import not_a_real_dependency\n",
        r"plugin module failed to import: ModuleNotFoundError.*not_a_real_dependency",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PLUGINS))
def test_bad_plugins_are_clear_errors_naming_file_and_plugin(case, write_plugin, write_robots):
    source, message = BAD_PLUGINS[case]
    write_plugin("bad_plugin", source)
    path = write_robots(["  - plugin: ember_plugins.drone", "  - plugin: bad_plugin"])
    with pytest.raises(FleetConfigError, match=message) as caught:
        load_fleet(path)
    assert str(caught.value).startswith(f"{path}: entry 2 (plugin 'bad_plugin'): ")


BAD_FILES = {
    "bad yaml": ("robots:\n  - plugin: [unclosed\n", r"not valid YAML"),
    "not a mapping": ("- ember_plugins.drone\n", r"expected a mapping with the single key 'robots'"),
    "empty list": ("robots: []\n", r"'robots' must be a non-empty list"),
    "entry without plugin": ("robots:\n  - robot: drone\n", r"entry 1: expected a mapping with a 'plugin' string"),
    "unknown entry key": ("robots:\n  - {plugin: ember_plugins.drone, overide: {}}\n", r"entry 1: unknown key\(s\) \['overide'\]"),
    "unknown plugin": ("robots:\n  - plugin: ember_plugins.helicopter\n",
                       r"entry 1 \(plugin 'ember_plugins.helicopter'\): unknown plugin: no entry point 'ember_plugins.helicopter' in group 'ember.robots'"),
    "duplicate id": ("robots:\n  - plugin: ember_plugins.drone\n  - plugin: ember_plugins.humanoid\n  - plugin: ember_plugins.drone\n",
                     r"entry 3 \(plugin 'ember_plugins.drone'\): field 'id': duplicate robot id 'drone', already given by entry 1"),
    "unknown override field": ("robots:\n  - plugin: ember_plugins.drone\n    overrides: {max_sped_mps: 3}\n",
                               r"entry 1 \(plugin 'ember_plugins.drone'\): overrides: field 'max_sped_mps': unknown card field"),
    "bad override value": ("robots:\n  - plugin: ember_plugins.drone\n    overrides: {payload_kg: heavy}\n",
                           r"overrides: field 'payload_kg': expected a non-negative number"),
    "id override": ("robots:\n  - plugin: ember_plugins.drone\n    overrides: {id: uav}\n", r"field 'id': the id is fixed by the plugin"),
    "unknown scene tag override": ("robots:\n  - plugin: ember_plugins.drone\n    overrides: {excluded_scenes: [space]}\n",
                                   r"entry 1 \(plugin 'ember_plugins.drone'\): overrides: field 'excluded_scenes': "
                                   r"unknown scene tag 'space'; known scene tags: underwater, aerial, indoor, outdoor, rough_terrain"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_robots_files_are_clear_errors(case, tmp_path):
    text, message = BAD_FILES[case]
    path = tmp_path / "robots.yaml"
    path.write_text(text)
    with pytest.raises(FleetConfigError, match=message) as caught:
        load_fleet(path)
    assert str(caught.value).startswith(str(path))


def test_a_file_above_the_size_limit_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "robots.yaml"
    path.write_text("robots:\n  - plugin: ember_plugins.drone\n#" + "#" * MAX_YAML_BYTES)
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(path)
    assert str(caught.value) == (f"{path}: file is {MAX_YAML_BYTES + 41} bytes, above the limit of {MAX_YAML_BYTES} "
                                 "(ember_core.limits.MAX_YAML_BYTES); a robots.yaml is a few kilobytes")


def test_an_error_quotes_a_short_excerpt_never_the_input(tmp_path):
    path = tmp_path / "robots.yaml"
    path.write_text("robots:\n  - [" + ", ".join(["lol"] * 20_000) + "]\n  - plugin: ember_plugins.drone\n")
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(path)
    assert str(caught.value) == f"{path}: entry 1: expected a mapping with a 'plugin' string, got ['lol', 'lol', 'lol', 'lol', ...]"


def test_anchors_aliases_and_merge_keys_under_the_limits_still_work(write_robots):
    fleet = load_fleet(write_robots([
        "  - &light {plugin: ember_plugins.drone, overrides: {payload_kg: 1.5, environments: &outside [outdoor, fields]}}",
        "  - {<<: *light, plugin: ember_plugins.humanoid}",
        "  - {plugin: ember_plugins.robot_with_legs, overrides: {environments: *outside}}",
    ]))
    assert fleet.ids == ["drone", "humanoid", "robot_with_legs"]
    assert fleet.robot("humanoid").payload_kg == 1.5 and fleet.robot("robot_with_legs").environments == ("outdoor", "fields")


def test_a_local_plugin_package_with_submodules_loads_without_touching_sys_path(tmp_path, write_robots):
    (tmp_path / "site_pkg").mkdir()
    (tmp_path / "site_pkg" / "__init__.py").write_text("")
    (tmp_path / "site_pkg" / "cards.py").write_text(SNAKE_PLUGIN)
    (tmp_path / "site_pkg" / "snake.py").write_text("from .cards import ember_robot_types\n")  # a relative import
    path_before = list(sys.path)
    fleet = load_fleet(write_robots(["  - plugin: site_pkg.snake"]))
    assert fleet.ids == ["snake_robot"] and sys.path == path_before
    assert str(tmp_path) not in sys.path


def test_plugins_of_the_same_name_next_to_two_robots_files_are_each_their_own(tmp_path):
    for site, robot_id in (("north", "north_cart"), ("south", "south_cart")):
        (tmp_path / site).mkdir()
        (tmp_path / site / "site_cart.py").write_text(SNAKE_PLUGIN.replace('"snake_robot"', repr(robot_id))
                                                      .replace('"Snake Robot"', repr(robot_id.replace("_", " ").title())))
        (tmp_path / site / "robots.yaml").write_text("robots:\n  - plugin: site_cart\n")
    assert load_fleet(tmp_path / "north" / "robots.yaml").ids == ["north_cart"]
    assert load_fleet(tmp_path / "south" / "robots.yaml").ids == ["south_cart"]
    assert load_fleet(tmp_path / "north" / "robots.yaml").ids == ["north_cart"]


def test_a_file_next_to_robots_yaml_named_like_an_installed_module_is_ignored_with_a_warning(write_plugin, write_robots, caplog):
    colorsys_file = write_plugin("colorsys", SNAKE_PLUGIN)
    path = write_robots(["  - plugin: ember_plugins.drone", "  - plugin: colorsys"])
    with pytest.raises(FleetConfigError, match=r"entry 2 \(plugin 'colorsys'\): the plugin declares no robot types"):
        load_fleet(path)
    assert (f"{path}: entry 2 (plugin 'colorsys'): {colorsys_file} is ignored: 'colorsys' is an installed or "
            "standard-library module, which comes first; rename the file to use it") in caplog.text


def test_an_entry_point_that_exits_on_load_is_a_named_error(tmp_path, monkeypatch, write_robots):
    site = tmp_path / "site"
    (site / "ember_exit_pkg").mkdir(parents=True)
    (site / "ember_exit_pkg" / "__init__.py").write_text("raise SystemExit(0)\n")
    info = site / "ember_exit_pkg-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ember-exit-pkg\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[ember.robots]\nexiter = ember_exit_pkg\n")
    monkeypatch.syspath_prepend(str(site))
    path = write_robots(["  - plugin: exiter"])
    with pytest.raises(FleetConfigError) as caught:
        load_fleet(path)
    assert str(caught.value) == (f"{path}: entry 1 (plugin 'exiter'): entry point 'ember_exit_pkg' failed to load: "
                                 "SystemExit: 0; a plugin must not exit the process")


def test_a_slow_robot_types_hook_is_reported_with_its_time(write_plugin, write_robots, caplog):
    write_plugin("slow_cards", "import time\n" + SNAKE_PLUGIN.replace("    return [", f"    time.sleep({HOOK_TIME_BUDGET_S + 0.05})\n    return ["))
    path = write_robots(["  - plugin: slow_cards"])
    with caplog.at_level(logging.WARNING, logger="ember_core.robots_file"):
        assert load_fleet(path).ids == ["snake_robot"]
    [record] = caplog.records
    assert re.fullmatch(rf"{re.escape(str(path))}: entry 1 \(plugin 'slow_cards'\): hook 'ember_robot_types' took 0\.\d\d s, "
                        r"above the budget of 0\.25 s \(ember_core\.limits\.HOOK_TIME_BUDGET_S\); loading the fleet waits for it",
                        record.getMessage())


def test_validate_reports_a_plugin_that_exits_instead_of_exiting_0(capsys, write_plugin, write_robots):
    write_plugin("exits_on_import", "import sys\nsys.exit(0)\n")
    path = write_robots(["  - plugin: exits_on_import"])
    assert main(["robots", "validate", str(path)]) != 0  # it exited 0 from inside the import
    out, err = capsys.readouterr()
    assert out == "" and err == (f"ember: error: {path}: entry 1 (plugin 'exits_on_import'): plugin module failed to "
                                 "import: SystemExit: 0; a plugin must not exit the process\n")


def test_validate_prints_the_fleet_warnings_and_exits_0(capsys, write_plugin, write_robots, default_robots_lines):
    write_plugin("drone_twin", '''
        import dataclasses

        from ember_plugins.drone import DRONE
        from ember_core import hookimpl

        @hookimpl
        def ember_robot_types():
            return [dataclasses.replace(DRONE, id="drone_twin", name="Drone Twin")]
    ''')
    assert main(["robots", "validate", str(write_robots(default_robots_lines + ["  - plugin: drone_twin"]))]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("OK ") and "6 robots" in out
    examples = len(importlib.import_module("ember_plugins.drone").DRONE.examples)
    assert err.splitlines() == [
        "warning: robots 'drone' and 'drone_twin' have the same description: the model can hardly tell them apart; "
        "make their cards differ",
        "warning: robots 'drone' and 'drone_twin' have the same capabilities: the model can hardly tell them apart; "
        "make their cards differ",
        f"warning: robots 'drone' and 'drone_twin' both list {examples} example requests, such as 'Photograph the roof "
        "of the town hall for missing tiles.': it teaches the model nothing about which of them to pick; keep each "
        "example on one",
    ]


@pytest.mark.parametrize("name", ["robots\x00.yaml", "r" * 5000 + ".yaml"], ids=["nul byte", "name too long"])
def test_a_robots_path_the_file_system_refuses_is_a_clear_error(tmp_path, name):
    with pytest.raises(FleetConfigError, match=r"robots file (cannot be opened|not found) \(from the given path\)") as caught:
        load_fleet(tmp_path / name)
    assert len(str(caught.value)) < 400
