"""Loading robots.yaml: lookup order, plugins by module path and by entry point, overrides, errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, SNAKE_PLUGIN
from ember_core import FleetConfigError, TaskContext, find_robots_file, load_fleet
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
