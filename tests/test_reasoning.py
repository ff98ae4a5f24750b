"""Reasoning and plan text: format → parse round trips, and every problem the parsers must report."""
from __future__ import annotations

import json

import pytest

from ember_train.public_data import PUBLIC_DATA
from ember_core import Fleet, RobotType, UnknownRobotError
from ember_core.explanation import Copy, ExplanationContext, explanation_text
from ember_core.reasoning import (
    Subtask,
    format_plan,
    join_names,
    parse_plan,
    parse_reasoning,
    step3_facts,
    subtasks_from_records,
)
from explanations import write_explanation

GARAGE_PLAN = """1. Drone: Survey the collapsed garage from above
2. Robot with Legs: Walk the ramps and inspect the cracks
2. Humanoid: Open the stairwell doors
3. Robot with Wheels: Carry the crack gauges to the entrance"""


@pytest.fixture(scope="module")
def fleet6(fleet) -> Fleet:
    rescue = RobotType(
        id="search_and_rescue_robot",
        name="Search and Rescue Robot",
        description="Tracked robot that searches rubble for survivors.",
        capabilities=["victim detection", "rubble traversal"],
        limitations=["slow movement"],
        environments=["collapsed buildings", "rubble"],
    )
    return Fleet([*fleet.robots, rescue])


def first_choice(slot) -> str:
    return " inspect the flooded basement" if isinstance(slot, Copy) else slot.options[0]


def reasoning_for(fleet: Fleet, decision: list[str], team: tuple[str, ...] = (), runner_up: str | None = None) -> str:
    context = ExplanationContext("Inspect the flooded basement of a collapsed garage.", fleet, tuple(decision), team,
                                 scene=None, runner_up=runner_up)
    return explanation_text(write_explanation(context, first_choice))


@pytest.mark.parametrize("decision", [["drone"], ["drone", "robot_with_legs"], ["underwater_robot", "drone", "humanoid"]])
def test_reasoning_round_trip_is_valid_and_gives_back_the_content(fleet, decision):
    text = reasoning_for(fleet, decision)
    reasoning = parse_reasoning(text, fleet, selected=decision)
    assert reasoning.valid, reasoning.problems
    assert reasoning.problems == []
    assert reasoning.decision == decision
    assert reasoning.steps == text.splitlines()
    assert reasoning.steps[0] == "Step 1: Task analysis: the task asks to inspect the flooded basement."
    names = join_names([fleet.robot(robot_id).name for robot_id in decision])
    assert reasoning.steps[3] == f"Step 4: Decision: Select {names}."


def test_names_are_joined_as_a_sentence():
    assert join_names(["Drone"]) == "Drone"
    assert join_names(["Drone", "Humanoid"]) == "Drone and Humanoid"
    assert join_names(["Drone", "Humanoid", "Robot with Legs"]) == "Drone, Humanoid and Robot with Legs"


def test_six_robot_fleet_keeps_a_name_containing_and_whole(fleet6):
    decision = ["search_and_rescue_robot", "drone", "humanoid"]
    text = reasoning_for(fleet6, decision)
    assert "Select Search and Rescue Robot, Drone and Humanoid." in text
    reasoning = parse_reasoning(text, fleet6, selected=decision)
    assert reasoning.valid, reasoning.problems
    assert reasoning.decision == decision


def test_parser_tolerates_spacing_case_and_collapsed_newlines(fleet):
    text = (
        "\r\n  Step 1:Task analysis:   Inspect  the  garage.  \r\n\r\n"
        "Step 2 :  environment ASSESSMENT: dusty\n"
        "Step 3: Capability matching: drone OFFERS  aerial   navigation "
        "Step 4: Decision: select  drone ,  and robot   WITH legs.\n\n"
    )
    reasoning = parse_reasoning(text, fleet, selected=["robot_with_legs", "drone"])
    assert reasoning.valid, reasoning.problems
    assert reasoning.decision == ["drone", "robot_with_legs"]
    assert reasoning.steps[0] == "Step 1: Task analysis: Inspect the garage."
    assert reasoning.text == text


def test_missing_step_3_is_reported_by_number(fleet):
    lines = reasoning_for(fleet, ["drone"]).splitlines()
    reasoning = parse_reasoning("\n".join(lines[:2] + lines[3:]), fleet, selected=["drone"])
    assert not reasoning.valid
    assert reasoning.problems == ["Step 3 (Capability matching) is missing"]
    assert [step[:6] for step in reasoning.steps] == ["Step 1", "Step 2", "Step 4"]


def test_unknown_robot_in_the_decision_is_named_with_the_fleet(fleet):
    text = reasoning_for(fleet, ["drone", "humanoid"]).replace("Select Drone and", "Select Helicopter, Drone and")
    reasoning = parse_reasoning(text, fleet, selected=["drone", "humanoid"])
    assert not reasoning.valid
    assert len(reasoning.problems) == 1
    assert "'Helicopter'" in reasoning.problems[0]
    assert "Drone, Underwater Robot, Humanoid, Robot with Wheels, Robot with Legs" in reasoning.problems[0]
    assert reasoning.decision == ["drone", "humanoid"]


def test_only_unknown_robots_in_the_decision_also_miss_the_top_robot(fleet):
    text = reasoning_for(fleet, ["drone"]).replace("Select Drone.", "Select Helicopter.")
    reasoning = parse_reasoning(text, fleet, selected=["drone"])
    assert reasoning.decision == []
    assert len(reasoning.problems) == 2 and "'Helicopter'" in reasoning.problems[0]
    assert reasoning.problems[1] == "Step 4 does not select Drone, the top-ranked robot"


def test_robot_named_twice_in_the_decision_is_reported(fleet):
    text = reasoning_for(fleet, ["drone"]).replace("Select Drone.", "Select Drone and drone.")
    reasoning = parse_reasoning(text, fleet, selected=["drone"])
    assert reasoning.problems == ["Step 4 selects Drone twice"]
    assert reasoning.decision == ["drone"]


def test_decision_without_the_top_ranked_robot_is_reported(fleet):
    reasoning = parse_reasoning(reasoning_for(fleet, ["humanoid"]), fleet, selected=["drone", "humanoid"])
    assert not reasoning.valid
    assert reasoning.problems == ["Step 4 does not select Drone, the top-ranked robot"]


def test_decision_naming_an_unselected_robot_and_missing_a_selected_one_is_reported(fleet):
    reasoning = parse_reasoning(reasoning_for(fleet, ["drone", "robot_with_wheels"]), fleet, selected=["drone", "humanoid"])
    assert not reasoning.valid
    assert len(reasoning.problems) == 2
    assert "Robot with Wheels" in reasoning.problems[0] and "did not select" in reasoning.problems[0]
    assert reasoning.problems[1] == "Step 4 does not name Humanoid, which the scores selected"


def test_step_3_facts_are_counted_against_each_robots_card(fleet):
    text = reasoning_for(fleet, ["drone", "underwater_robot"], runner_up="humanoid")
    facts = step3_facts(parse_reasoning(text, fleet, ["drone", "underwater_robot"]).steps[2].split(":", 2)[2], fleet)
    assert [(f.robot_id, f.relation, f.on_card) for f in facts] == [
        ("drone", "offers", True), ("drone", "offers", True), ("underwater_robot", "offers", True),
        ("underwater_robot", "offers", True), ("humanoid", "is less suited:", True)]
    assert facts[0].phrase == fleet.robot("drone").capabilities[0]


def test_a_fact_of_another_robots_card_or_none_is_a_problem(fleet):
    text = reasoning_for(fleet, ["drone"]).replace("Drone offers fastest", "Drone offers underwater navigation")
    reasoning = parse_reasoning(text, fleet, ["drone"])
    assert reasoning.problems == ["Step 3 says Drone offers 'underwater navigation', which its card does not list"]
    vague = reasoning_for(fleet, ["drone"]).replace("Drone offers", "The drone is great at")
    assert "does not start with '<Robot Name> offers'" in parse_reasoning(vague, fleet, ["drone"]).problems[0]


def test_no_free_robot_gives_a_valid_empty_decision(fleet):
    text = reasoning_for(fleet, [])
    assert "Step 4: Decision: Select no robot" in text
    reasoning = parse_reasoning(text, fleet, [])
    assert reasoning.valid and reasoning.decision == []
    assert parse_reasoning(text, fleet, ["drone"]).problems == ["Step 4 selects no robot, but the scores selected Drone"]


def test_a_team_decision_names_the_team_in_plan_order(fleet):
    text = reasoning_for(fleet, ["drone", "underwater_robot"], team=("drone", "underwater_robot"))
    assert text.endswith("Select Drone and Underwater Robot. They work as a team: Drone, then Underwater Robot.")
    assert parse_reasoning(text, fleet, ["drone", "underwater_robot"]).valid


@pytest.mark.parametrize("garbage", ["the the drone drone Step 2", "", "Select Drone.", "drone drone drone <|image|> the"])
def test_garbage_gives_invalid_reasoning_and_invents_nothing(fleet, garbage):
    reasoning = parse_reasoning(garbage, fleet, selected=["drone"])
    assert not reasoning.valid
    assert reasoning.steps == [] and reasoning.decision == []
    for number in range(1, 5):
        assert any(f"Step {number}" in problem and "missing" in problem for problem in reasoning.problems)
    if garbage.strip():
        assert any(garbage in problem for problem in reasoning.problems)


def test_steps_out_of_order_and_duplicated_are_reported(fleet):
    lines = reasoning_for(fleet, ["drone"]).splitlines()
    swapped = parse_reasoning("\n".join([lines[0], lines[2], lines[1], lines[3]]), fleet, selected=["drone"])
    assert swapped.problems == ["steps are out of order: 1, 3, 2, 4"]
    doubled = parse_reasoning("\n".join([lines[0], lines[1], lines[1], lines[2], lines[3]]), fleet, selected=["drone"])
    assert doubled.problems == ["Step 2 appears 2 times"]


def test_empty_step_and_missing_label_are_reported(fleet):
    lines = reasoning_for(fleet, ["drone"]).splitlines()
    empty = parse_reasoning("\n".join([lines[0], "Step 2: Environment assessment:", *lines[2:]]), fleet, ["drone"])
    assert empty.problems == ["Step 2 (Environment assessment) is empty"]
    bare = parse_reasoning("\n".join([lines[0], "Step 2:", *lines[2:]]), fleet, ["drone"])
    assert bare.problems == ["Step 2 (Environment assessment) is empty"]
    unlabelled = parse_reasoning("\n".join([lines[0], "Step 2: dusty", *lines[2:]]), fleet, ["drone"])
    assert unlabelled.problems == ["Step 2 should start with 'Environment assessment:'"]


def test_step_4_without_select_is_reported(fleet):
    lines = reasoning_for(fleet, ["drone"]).splitlines()
    reasoning = parse_reasoning("\n".join([*lines[:3], "Step 4: Decision: The drone is best."]), fleet, ["drone"])
    assert not reasoning.valid
    assert reasoning.decision == []
    assert len(reasoning.problems) == 1 and "Step 4 has no decision" in reasoning.problems[0]
    nobody = parse_reasoning("\n".join([*lines[:3], "Step 4: Decision: Select ."]), fleet, ["drone"])
    assert nobody.problems == ["Step 4 selects no robot"]


def test_text_after_step_4_is_reported(fleet):
    text = reasoning_for(fleet, ["drone"]) + "\nI also like turtles."
    reasoning = parse_reasoning(text, fleet, selected=["drone"])
    assert reasoning.problems == ["text after Step 4: 'I also like turtles.'"]
    assert len(reasoning.steps) == 4


def test_the_program_rejects_a_robot_outside_the_fleet(fleet):
    with pytest.raises(UnknownRobotError, match="helicopter"):
        reasoning_for(fleet, ["helicopter"])


def test_reasoning_to_dict_is_the_document_form(fleet):
    reasoning = parse_reasoning(reasoning_for(fleet, ["drone"]), fleet, ["drone"])
    data = reasoning.to_dict()
    assert set(data) == {"text", "steps", "decision", "reasoning_valid", "problems"}
    assert data["reasoning_valid"] is True and data["decision"] == ["drone"]
    json.dumps(data)


def test_plan_round_trip_is_valid_with_parallel_dependencies(fleet):
    plan = parse_plan(GARAGE_PLAN, fleet)
    assert plan.valid, plan.problems
    assert [(s.id, s.order, s.robot_id, s.depends_on) for s in plan.subtasks] == [
        (1, 1, "drone", []),
        (2, 2, "robot_with_legs", [1]),
        (3, 2, "humanoid", [1]),
        (4, 3, "robot_with_wheels", [2, 3]),
    ]
    assert plan.subtasks[1].robot_type == "Robot with Legs"
    assert plan.subtasks[2].description == "Open the stairwell doors"
    assert format_plan(plan.subtasks, fleet) == GARAGE_PLAN


def test_plan_dependencies_follow_orders_not_line_positions(fleet):
    text = "2. Humanoid: Open doors\n1. Drone: Survey\n1. Robot with Legs: Walk in\n3. Humanoid: Report\n3. Drone: Film"
    plan = parse_plan(text, fleet)
    assert plan.valid, plan.problems
    assert [s.depends_on for s in plan.subtasks] == [[2, 3], [], [], [1], [1]]


def test_plan_round_trip_on_a_six_robot_fleet(fleet6):
    subtasks = [
        Subtask(1, 1, "Search the rubble: find survivors", "search_and_rescue_robot", "Search and Rescue Robot"),
        Subtask(2, 1, "Map the site", "drone", "Drone"),
        Subtask(3, 2, "Carry out the injured", "humanoid", "Humanoid", [1, 2]),
    ]
    text = format_plan(subtasks, fleet6)
    assert text.splitlines()[0] == "1. Search and Rescue Robot: Search the rubble: find survivors"
    plan = parse_plan(text, fleet6)
    assert plan.valid, plan.problems
    assert plan.subtasks == subtasks


def test_unknown_robot_in_a_plan_is_reported_and_its_subtask_dropped(fleet):
    plan = parse_plan(GARAGE_PLAN.replace("2. Humanoid", "2. Helicopter"), fleet)
    assert not plan.valid
    assert len(plan.problems) == 1 and "'Helicopter'" in plan.problems[0] and "Robot with Legs" in plan.problems[0]
    assert [s.robot_id for s in plan.subtasks] == ["drone", "robot_with_legs", "robot_with_wheels"]
    assert [s.depends_on for s in plan.subtasks] == [[], [1], [2]]


def test_malformed_plan_line_is_quoted(fleet):
    plan = parse_plan(GARAGE_PLAN + "\nthen everybody goes home", fleet)
    assert plan.problems == ["plan line 'then everybody goes home' does not match '<order>. <Robot Name>: <subtask>'"]
    assert len(plan.subtasks) == 4


def test_plan_orders_must_start_at_1_and_not_skip(fleet):
    late = parse_plan("2. Drone: Survey\n3. Humanoid: Open doors", fleet)
    assert late.problems == ["plan orders start at 2, not 1"]
    gap = parse_plan("1. Drone: Survey\n3. Humanoid: Open doors\n3. Drone: Film\n5. Humanoid: Report", fleet)
    assert gap.problems == ["plan skips order 2, 4 (orders found: 1, 3, 5)"]
    assert [s.depends_on for s in gap.subtasks] == [[], [1], [1], [2, 3]]


def test_empty_plan_is_valid_only_when_allowed(fleet):
    assert parse_plan("", fleet).problems == ["the plan has no subtasks"]
    assert parse_plan(" \n\n", fleet, allow_empty=True).valid
    garbage = parse_plan("the the drone drone", fleet, allow_empty=True)
    assert not garbage.valid and garbage.subtasks == []


def test_a_team_plan_must_give_every_member_a_subtask_and_no_one_else(fleet):
    team = ("drone", "robot_with_legs", "humanoid")
    assert parse_plan("", fleet, allow_empty=True, team=team).problems == [
        "the plan has no subtasks but the job needs a team of Drone, Robot with Legs and Humanoid"]
    partial = parse_plan("1. Drone: Survey the garage\n2. Robot with Wheels: Carry gauges", fleet, team=team)
    assert partial.problems == [
        "the plan gives no subtask to Robot with Legs and Humanoid, of the team Drone, Robot with Legs and Humanoid",
        "the plan assigns Robot with Wheels, not of the team Drone, Robot with Legs and Humanoid"]
    assert parse_plan(GARAGE_PLAN.replace("3. Robot with Wheels", "3. Humanoid"), fleet, team=team).valid


def test_plan_to_dict_is_the_document_form(fleet):
    data = parse_plan(GARAGE_PLAN, fleet).to_dict()
    assert set(data) == {"text", "subtasks", "plan_valid", "problems"}
    assert data["subtasks"][3] == {
        "id": 4, "order": 3, "description": "Carry the crack gauges to the entrance",
        "robot_id": "robot_with_wheels", "robot_type": "Robot with Wheels", "depends_on": [2, 3],
    }
    json.dumps(data)


def test_subtasks_from_records_of_the_public_dataset(fleet):
    path = PUBLIC_DATA / "multi_robot_selection_dataset.json"
    if not path.is_file():
        pytest.skip(f"public dataset not found at {path}")
    records = json.loads(path.read_text(encoding="utf-8"))
    record = records[0]["subtasks"]
    subtasks = subtasks_from_records(record, fleet)
    assert [s.robot_type for s in subtasks] == [r["assigned_robot"] for r in record]
    assert [s.order for s in subtasks] == [r["execution_order"] for r in record]
    assert [s.description for s in subtasks] == [r["subtask"] for r in record]
    assert [s.id for s in subtasks] == list(range(1, len(record) + 1))
    reparsed = parse_plan(format_plan(subtasks, fleet), fleet)
    assert reparsed.subtasks == subtasks
    for entry in records:
        assert len(subtasks_from_records(entry["subtasks"], fleet)) == len(entry["subtasks"])


def test_subtasks_from_records_computes_dependencies_like_the_parser(fleet):
    records = [
        {"subtask": "Open doors", "assigned_robot": "Humanoid", "execution_order": 2},
        {"subtask": "Survey", "assigned_robot": "Drone", "execution_order": 1},
        {"subtask": "Walk in", "assigned_robot": "Robot with Legs", "execution_order": 1},
        {"subtask": "Report", "assigned_robot": "Humanoid", "execution_order": 3},
    ]
    subtasks = subtasks_from_records(records, fleet)
    assert [s.depends_on for s in subtasks] == [[2, 3], [], [], [1]]
    assert subtasks == parse_plan(format_plan(subtasks, fleet), fleet).subtasks


def test_subtasks_from_records_names_an_unknown_robot(fleet):
    records = [{"subtask": "Fly over", "assigned_robot": "Helicopter", "execution_order": 1}]
    with pytest.raises(ValueError, match="record 1: 'assigned_robot' 'Helicopter' is not in the fleet"):
        subtasks_from_records(records, fleet)
    with pytest.raises(ValueError, match="'execution_order' must be an integer >= 1, got 0"):
        subtasks_from_records([{"subtask": "Fly", "assigned_robot": "Drone", "execution_order": 0}], fleet)
