"""The default fleet, Fleet lookups, the fleet hash, the prompt rendering and the feasibility hook."""
from __future__ import annotations

import json

import pytest

from conftest import PUBLIC_DATA
from ember_core import Fleet, RobotType, RobotTypeError, TaskContext, UnknownRobotError, load_fleet
from ember_core.model.prompt import card_phrases

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
        assert {record["instruction"] for record in records} == {fleet.render_cards()}


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


@pytest.mark.parametrize(
    ("scene", "vetoed"),
    [
        (set(), []),
        ({"underwater"}, ["drone", "humanoid", "robot_with_wheels", "robot_with_legs"]),
        ({"aerial", "outdoor"}, ["underwater_robot"]),
        ({"indoor"}, ["underwater_robot"]),
    ],
)
def test_plugins_veto_robots_that_cannot_work_in_the_scene(fleet, scene, vetoed):
    vetoes = fleet.infeasible(TaskContext(task="inspect the area", scene=frozenset(scene)))
    assert sorted(vetoes) == sorted(vetoed)
    for reasons in vetoes.values():
        assert all(isinstance(reason, str) and reason for reason in reasons)


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
        ("name", "", "non-empty string"),
        ("capabilities", "flying", "list of strings"),
        ("limitations", [], "at least one entry"),
        ("environments", ["ok", 3], "non-empty strings"),
        ("examples", "Fly over the dam.", "list of strings"),
        ("examples", ["Fly over the dam.", " "], "non-empty strings"),
        ("payload_kg", -1, "non-negative number"),
        ("max_speed_mps", True, "non-negative number"),
    ],
)
def test_robot_type_validation_names_the_field(fleet, field, value, message):
    card = {**fleet.robots[0].to_dict(), field: value}
    with pytest.raises(RobotTypeError, match=f"field '{field}': .*{message}") as caught:
        RobotType(**card)
    assert caught.value.field == field
