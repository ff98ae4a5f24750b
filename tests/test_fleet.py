"""The default fleet, Fleet lookups, the fleet hash, the prompt rendering, the card scene rules, the feasibility hook
(one plugin at a time: bad answers, slow hooks) and the fleet's warnings."""
from __future__ import annotations

import importlib
import json
import logging
import re
import time

import pytest

from ember_train.public_data import PUBLIC_DATA
from ember_core import Fleet, RobotType, RobotTypeError, TaskContext, UnknownRobotError, hookimpl, load_fleet
from ember_core.fleet import LARGE_FLEET, MAX_REASON_CHARS, fleet_warnings, new_plugin_manager
from ember_core.limits import HOOK_TIME_BUDGET_S
from ember_core.prompt import card_phrases, fleet_text

DEFAULT_IDS = ["drone", "underwater_robot", "humanoid", "robot_with_wheels", "robot_with_legs"]


def test_default_fleet_has_the_five_builtin_robots_in_robots_yaml_order(fleet):
    assert fleet.ids == DEFAULT_IDS
    assert fleet.names == ["Drone", "Underwater Robot", "Humanoid", "Robot with Wheels", "Robot with Legs"]
    assert fleet.num_robots == len(fleet) == 5


def test_lookup_by_id_display_name_and_dataset_spelling(fleet):
    assert fleet.index("robot_with_legs") == 4
    assert fleet.index("Robot with Legs") == 4
    assert fleet.index("  robot WITH   legs ") == 4
    assert fleet.robot("Underwater Robot").id == "underwater_robot"
    assert "Drone" in fleet and "drone" in fleet and "Snake Robot" not in fleet


def test_unknown_robot_error_lists_the_fleet(fleet):
    with pytest.raises(UnknownRobotError, match="unknown robot 'Snake Robot'.*drone, underwater_robot"):
        fleet.index("Snake Robot")


def test_cards_render_exactly_as_the_public_dataset_instruction(fleet):
    if not PUBLIC_DATA.is_dir():
        pytest.skip(f"public dataset not found at {PUBLIC_DATA}")
    for name in ("single_robot_selection.json", "multi_robot_selection_dataset.json"):
        records = json.loads((PUBLIC_DATA / name).read_text(encoding="utf-8"))
        assert {record["instruction"] for record in records} == {fleet_text(fleet)}


def test_hash_is_stable_and_tracks_order_and_card_facts(fleet):
    assert load_fleet().hash == fleet.hash
    reordered = Fleet(list(reversed(fleet.robots)))
    assert reordered.hash != fleet.hash
    heavier = fleet.robots[0].with_overrides({"payload_kg": 2.5})
    changed = Fleet([heavier, *fleet.robots[1:]])
    assert changed.hash != fleet.hash
    assert Fleet(list(fleet.robots)).hash == fleet.hash


def test_fleet_rejects_two_robots_with_the_same_name(fleet):
    twin = RobotType(**{**fleet.robots[0].to_dict(), "id": "drone_two"})
    with pytest.raises(ValueError, match="'drone' is used by two robot types"):
        Fleet([fleet.robots[0], twin])


UNDER_WATER = {robot_id: [f"{name} cannot operate under water"] for robot_id, name in (
    ("drone", "Drone"), ("humanoid", "Humanoid"), ("robot_with_wheels", "Robot with Wheels"), ("robot_with_legs", "Robot with Legs"))}
DRY = {"underwater_robot": ["Underwater Robot operates only under water and the scene shows none of that"]}


@pytest.mark.parametrize(
    ("scene", "vetoes"),
    [
        (set(), {}),  # an unknown scene rules nobody out, not even the underwater robot
        ({"underwater"}, UNDER_WATER),
        ({"underwater", "rough_terrain"}, UNDER_WATER),
        ({"aerial", "outdoor"}, DRY),
        ({"indoor"}, DRY),
        ({"rough_terrain"}, DRY),
    ],
)
def test_card_scene_rules_veto_robots_that_cannot_work_in_the_scene(fleet, scene, vetoes):
    assert fleet.infeasible(TaskContext(task="inspect the area", scene=frozenset(scene))) == vetoes


def test_builtin_plugins_are_their_cards_only(fleet):
    rules = {robot.id: (robot.excluded_scenes, robot.required_scenes) for robot in fleet}
    assert rules == {"drone": (("underwater",), ()), "underwater_robot": ((), ("underwater",)),
                     "humanoid": (("underwater",), ()), "robot_with_wheels": (("underwater",), ()),
                     "robot_with_legs": (("underwater",), ())}
    for name in (*DEFAULT_IDS, "snake_robot"):
        module = importlib.import_module(f"ember_plugins.{name}")
        assert not hasattr(module, "ember_robot_infeasible"), name
    assert importlib.import_module("ember_plugins.snake_robot").SNAKE_ROBOT.excluded_scenes == ("aerial", "underwater")


def _card(**rules) -> RobotType:
    return RobotType(id="cart", name="Cart", description="A cart.", capabilities=["carry loads"],
                     limitations=["slow"], environments=["warehouse"], **rules)


def test_excluded_scenes_give_one_reason_per_tag_seen():
    crawler = _card(excluded_scenes=["aerial", "underwater"])
    assert crawler.infeasible_in(frozenset({"underwater", "aerial", "outdoor"})) == [
        "Cart cannot operate under water", "Cart cannot operate at height or from the air"]
    assert crawler.infeasible_in(frozenset({"aerial"})) == ["Cart cannot operate at height or from the air"]
    assert crawler.infeasible_in(frozenset({"indoor", "rough_terrain"})) == []
    assert crawler.infeasible_in(frozenset()) == []


def test_required_scenes_need_one_of_them_in_a_known_scene():
    cleaner = _card(required_scenes=["indoor", "underwater"])
    assert cleaner.infeasible_in(frozenset({"outdoor", "rough_terrain"})) == [
        "Cart operates only under water or indoors and the scene shows none of that"]
    assert cleaner.infeasible_in(frozenset({"indoor"})) == []
    assert cleaner.infeasible_in(frozenset({"underwater", "outdoor"})) == []
    assert cleaner.infeasible_in(frozenset()) == []  # unknown scene: no evidence against it
    assert _card().infeasible_in(frozenset({"underwater"})) == []


def test_a_plugin_hook_still_vetoes_alongside_the_card_rules(write_plugin, write_robots):
    write_plugin("site_cart", '''
        from ember_core import RobotType, hookimpl

        @hookimpl
        def ember_robot_types():
            return [RobotType(id="cart", name="Cart", description="Site cart.", capabilities=["carry"],
                              limitations=["flat floors only"], environments=["indoor"], excluded_scenes=["rough_terrain"])]

        @hookimpl
        def ember_robot_infeasible(robot, context):
            if robot.id == "drone" and ("indoor" in context.scene or "harbour" in context.task):
                return "drones are not allowed indoors or over the harbour at this site"
            return None
    ''')
    site = load_fleet(write_robots(["  - plugin: ember_plugins.drone", "  - plugin: ember_plugins.underwater_robot",
                                    "  - plugin: site_cart"]))
    harbour = site.infeasible(TaskContext(task="film the harbour", scene=frozenset({"underwater", "rough_terrain"})))
    assert harbour == {"drone": ["Drone cannot operate under water",
                                 "drones are not allowed indoors or over the harbour at this site"],
                       "cart": ["Cart cannot operate on rough or uneven ground"]}
    indoors = site.infeasible(TaskContext(task="film the hall", scene=frozenset({"indoor"})))
    assert indoors == {"drone": ["drones are not allowed indoors or over the harbour at this site"], **DRY}
    assert site.infeasible(TaskContext(task="film the hall")) == {}


def test_fleet_json_records_written_before_the_scene_rules_still_load(fleet):
    """Checkpoints store each card as `to_dict()` in fleet.json and load it with `RobotType(**record)`."""
    for record in json.loads(json.dumps([robot.to_dict() for robot in fleet])):
        old = {key: value for key, value in record.items() if key not in ("excluded_scenes", "required_scenes")}
        robot = RobotType(**old)
        assert robot.excluded_scenes == () and robot.required_scenes == () and robot.capabilities == tuple(record["capabilities"])
        assert robot.infeasible_in(frozenset({"underwater"})) == []
    card = fleet.robot("drone").to_dict()
    assert card["excluded_scenes"] == ["underwater"] and card["required_scenes"] == []
    assert RobotType(**card) == fleet.robot("drone")


def test_robot_type_normalises_phrases_and_keeps_numbers(fleet):
    robot = RobotType(
        id="cart", name=" Cart ", description="A  cart.", capabilities=("carry  loads",),
        limitations=["slow"], environments=["indoor"], payload_kg=10,
    )
    assert robot.name == "Cart" and robot.capabilities == ("carry loads",) and robot.payload_kg == 10.0
    assert robot.roles == () and robot.examples == ()  # optional lists


def test_every_builtin_robot_has_example_requests_the_model_matches(fleet):
    for robot in fleet:
        assert len(robot.examples) >= 30, robot.id
        assert set(robot.examples) <= set(card_phrases(robot))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "Underwater Robot", "lower_snake_case"),
        ("id", "drone\n", "lower_snake_case"),  # re.match with $ accepted it: $ matches before a final newline
        ("id", "drone\t", "lower_snake_case"),
        ("name", "Drone\x1b[31m", "control or formatting character U\\+001B at position 5"),
        ("name", "Dr\u200bone", "control or formatting character U\\+200B"),  # looks like "Drone"
        ("payload_kg", 10**400, "non-negative number"),  # too large for a float: was an OverflowError
        ("name", "", "non-empty string"),
        ("capabilities", "flying", "list of strings"),
        ("limitations", [], "at least one entry"),
        ("environments", ["ok", 3], "non-empty strings"),
        ("examples", "Fly over the dam.", "list of strings"),
        ("examples", ["Fly over the dam.", " "], "non-empty strings"),
        ("payload_kg", -1, "non-negative number"),
        ("max_speed_mps", True, "non-negative number"),
        ("excluded_scenes", ["space"], "unknown scene tag 'space'; known scene tags: underwater, aerial, indoor, outdoor, rough_terrain"),
        ("excluded_scenes", "underwater", "list of strings"),
        ("required_scenes", ["under water"], "unknown scene tag 'under water'; known scene tags: underwater, aerial"),
        ("required_scenes", ["underwater"], "'underwater' is also in excluded_scenes"),  # the drone's card excludes it
    ],
)
def test_robot_type_validation_names_the_field(fleet, field, value, message):
    card = {**fleet.robots[0].to_dict(), field: value}
    with pytest.raises(RobotTypeError, match=f"field '{field}': .*{message}") as caught:
        RobotType(**card)
    assert caught.value.field == field


class _Site:
    """A plugin object whose feasibility hook gives `answer` for the drone (or raises it, or sleeps first)."""

    def __init__(self, answer=None, sleep_s: float = 0.0):
        self.answer, self.sleep_s, self.calls = answer, sleep_s, 0

    @hookimpl
    def ember_robot_infeasible(self, robot, context):
        self.calls += 1
        time.sleep(self.sleep_s)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer if robot.id == "drone" else None


def _judged(fleet, **plugins) -> Fleet:
    manager = new_plugin_manager()
    for name, plugin in plugins.items():
        manager.register(plugin, name=name)
    return Fleet(fleet.robots, manager)


@pytest.mark.parametrize("answer", [42, ["no"], b"no drones", "", "   ", True, RuntimeError("site db down"),
                                    SystemExit(0), KeyError("drone")], ids=repr)
def test_a_bad_hook_answer_is_no_veto_with_one_warning_and_hides_no_other_plugin(fleet, caplog, answer):
    judged = _judged(fleet, bad_site=_Site(answer), good_site=_Site("no drones on this site"))
    with caplog.at_level(logging.WARNING, logger="ember_core.fleet"):
        for _ in range(3):
            assert judged.infeasible(TaskContext(task="film the yard")) == {"drone": ["no drones on this site"]}
    assert len(caplog.records) == 1  # once per plugin, not once per request
    message = caplog.records[0].getMessage()
    assert message.startswith("plugin 'bad_site': hook 'ember_robot_infeasible' ")
    assert ("raised" in message) == isinstance(answer, BaseException) and "no objection" in message
    assert list(judged.hook_problems) == [("bad_site", "raised" if isinstance(answer, BaseException) else "result")]


def test_a_huge_or_multiline_reason_is_cut_to_one_short_line(fleet, caplog):
    reason = "drones\n\x1b[31mforbidden\x1b[0m " + "x" * 10_000_000
    judged = _judged(fleet, chatty=_Site(reason))
    with caplog.at_level(logging.WARNING, logger="ember_core.fleet"):
        start = time.perf_counter()
        reasons = judged.infeasible(TaskContext(task="film the yard"))["drone"]
        assert time.perf_counter() - start < 1.0
    assert len(reasons) == 1 and len(reasons[0]) == MAX_REASON_CHARS
    assert reasons[0].startswith("drones [31mforbidden [0m xxx") and reasons[0].endswith("x…")
    assert f"returned a reason of {len(reason)} characters, cut to 200" in caplog.text


def test_plugins_are_asked_in_robots_yaml_order(fleet):
    judged = _judged(fleet, first=_Site("first rule"), second=_Site("second rule"))
    assert judged.infeasible(TaskContext(task="x", scene=frozenset({"underwater"})))["drone"] == [
        "Drone cannot operate under water", "first rule", "second rule"]


def test_a_slow_hook_is_reported_with_its_time_once(fleet, caplog):
    slow = _Site("too windy", sleep_s=HOOK_TIME_BUDGET_S + 0.05)
    judged = _judged(fleet, weather=slow)
    with caplog.at_level(logging.WARNING, logger="ember_core.fleet"):
        assert judged.infeasible(TaskContext(task="x"))["drone"] == ["too windy"]
        judged.infeasible(TaskContext(task="x"))
    assert slow.calls == 2 * len(fleet)  # Ember cannot interrupt it: it is reported, and still asked
    [record] = caplog.records
    assert re.fullmatch(r"plugin 'weather': hook 'ember_robot_infeasible' took 0\.\d\d s, above the budget of 0\.25 s "
                        r"\(ember_core\.limits\.HOOK_TIME_BUDGET_S\); every selection waits for it, since Ember cannot "
                        r"interrupt a hook: make it faster", record.getMessage())


def test_fleet_warnings_name_duplicate_phrases_shared_examples_and_large_fleets(fleet):
    assert fleet_warnings(fleet) == []
    drone = fleet.robot("drone")
    twin = drone.with_overrides({"capabilities": [*drone.capabilities, "Aerial navigation."]})
    copycat = RobotType(**{**fleet.robot("humanoid").to_dict(), "id": "copycat", "name": "Copycat",
                           "capabilities": list(reversed(drone.capabilities)), "examples": [drone.examples[0].upper()]})
    assert fleet_warnings(Fleet([twin, copycat])) == [
        "robots 'drone' and 'copycat' have the same capabilities: the model can hardly tell them apart; make their "
        "cards differ",  # in another order, and with a phrase twice: still the same
        f"robots 'drone' and 'copycat' both list the example request '{drone.examples[0].upper()}': it teaches the "
        "model nothing about which of them to pick; keep each example on one",
        "robot 'drone': field 'capabilities' lists 'Aerial navigation.' twice (ignoring case and punctuation); remove one",
    ]
    many = [RobotType(**{**drone.to_dict(), "id": f"drone_{i}", "name": f"Drone {i}", "examples": [],
                         "description": f"Drone number {i}.", "capabilities": [f"fly route {i}"]})
            for i in range(LARGE_FLEET + 1)]
    assert fleet_warnings(Fleet(many)) == [
        f"the fleet has {LARGE_FLEET + 1} robots, more than {LARGE_FLEET}: the prompt carries every card, so large "
        "fleets leave the task little room in the model's context and select more slowly"]
    same = [RobotType(**{**robot.to_dict(), "description": "A robot."}) for robot in many[:30]]
    warnings = fleet_warnings(Fleet(same), limit=5)
    assert len(warnings) == 6 and warnings[-1] == "... and 24 more warnings"
    assert warnings[0] == ("robots 'drone_0' and 'drone_1' have the same description: the model can hardly tell them "
                           "apart; make their cards differ")
