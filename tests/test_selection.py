"""The selection document: what to_document() builds validates against the shipped schema; bad ones do not."""
from __future__ import annotations

import copy
import dataclasses
import json

import jsonschema
import pytest

from ember_core import Fleet, RobotType
from ember_core.explanation import Choice, ExplanationContext, explanation_text
from ember_core.reasoning import format_plan, parse_plan, parse_reasoning, subtasks_from_records
from ember_core.selection import (
    SCHEMA_PATH,
    STATUSES,
    Candidate,
    ImageInfo,
    Selection,
    validate_document,
)
from explanations import write_explanation


@pytest.fixture(scope="module")
def fleet6(fleet) -> Fleet:
    snake = RobotType(
        id="snake_robot",
        name="Snake Robot",
        description="Slender multi-link robot that slides through pipes and rubble gaps.",
        capabilities=["pipe navigation", "confined space access"],
        limitations=["slow movement"],
        environments=["pipes", "rubble"],
    )
    return Fleet([*fleet.robots, snake])


def ok_selection(fleet: Fleet, image: ImageInfo | None, selected: list[str]) -> Selection:
    """An ok result as the Selector builds it: ranked candidates, checked reasoning, and with two robots or
    more selected a team of them with its plan."""
    team = tuple(selected) if len(selected) > 1 else ()
    context = ExplanationContext("Inspect the pipes.", fleet, tuple(selected), team)
    text = explanation_text(write_explanation(context, lambda slot: slot.options[0] if isinstance(slot, Choice)
                                              else " inspect the pipes"))
    reasoning = parse_reasoning(text, fleet, selected)
    records = [
        {"subtask": f"Do part {i}", "assigned_robot": fleet.robot(robot_id).name, "execution_order": i}
        for i, robot_id in enumerate(selected, 1)
    ]
    plan = parse_plan(format_plan(subtasks_from_records(records, fleet), fleet) if team else "", fleet,
                      allow_empty=True, team=team)
    others = [robot_id for robot_id in fleet.ids if robot_id not in selected]
    ranked = selected + others
    candidates = [
        Candidate(
            rank=rank,
            robot_id=robot_id,
            robot_type=fleet.robot(robot_id).name,
            confidence=round(0.9 / rank, 3),
            selected=robot_id in selected,
            infeasible=["cannot enter water"] if robot_id == "drone" else [],
            reasoning=reasoning.steps if robot_id in reasoning.decision else None,
        )
        for rank, robot_id in enumerate(ranked, 1)
    ]
    return Selection(
        request_id="req-1",
        task="Inspect the pipes.",
        status="ok",
        errors=[],
        stamp=1_700_000_000.25,
        image=image,
        fleet_ids=fleet.ids,
        fleet_hash=fleet.hash,
        model_name="ember-tiny",
        model_sha="0" * 64,
        top_k=len(fleet),
        candidates=candidates,
        reasoning=reasoning,
        plan=plan,
        latency_ms={"preprocess": 1.2, "model": 14.0, "reasoning": 180.0},
        team=list(team),
    )


@pytest.fixture
def ok_document(fleet) -> dict:
    image = ImageInfo(stamp=1_699_999_999.9, frame_id="camera_optical", age_ms=350.0)
    return ok_selection(fleet, image, ["underwater_robot", "robot_with_legs"]).to_document()


def test_ok_document_with_reasoning_and_plan_validates(ok_document, fleet):
    validate_document(ok_document)
    assert list(ok_document) == [
        "schema", "request_id", "task_id", "task", "status", "errors", "stamp", "image", "fleet", "model",
        "top_k", "candidates", "team", "reasoning", "plan", "latency_ms",
    ]
    assert ok_document["schema"] == "ember.selection/1"
    assert ok_document["fleet"] == {"robots": fleet.ids, "hash": fleet.hash}
    assert ok_document["reasoning"]["reasoning_valid"] is True
    assert ok_document["reasoning"]["decision"] == ["underwater_robot", "robot_with_legs"]
    assert ok_document["team"] == ["underwater_robot", "robot_with_legs"]
    assert ok_document["plan"]["plan_valid"] is True
    assert ok_document["plan"]["subtasks"][1]["depends_on"] == [1]
    first, third = ok_document["candidates"][0], ok_document["candidates"][2]
    assert first["reasoning"] == ok_document["reasoning"]["steps"] and third["reasoning"] is None
    assert json.loads(json.dumps(ok_document)) == ok_document


def test_text_only_document_validates(fleet):
    document = ok_selection(fleet, None, ["drone"]).to_document()
    assert document["image"] is None
    validate_document(document)


def test_document_of_a_six_robot_fleet_validates(fleet6):
    document = ok_selection(fleet6, None, ["snake_robot"]).to_document()
    validate_document(document)
    assert document["fleet"]["robots"][-1] == "snake_robot"
    assert len(document["candidates"]) == 6


def test_invalid_reasoning_and_plan_still_give_a_valid_document(fleet):
    selection = ok_selection(fleet, None, ["drone"])
    garbage = dataclasses.replace(
        selection,
        reasoning=parse_reasoning("the the drone drone Step 2", fleet, ["drone"]),
        plan=parse_plan("the the drone drone", fleet),
    )
    document = garbage.to_document()
    validate_document(document)
    assert document["reasoning"]["reasoning_valid"] is False and document["reasoning"]["problems"]
    assert document["plan"]["plan_valid"] is False and document["plan"]["subtasks"] == []


@pytest.mark.parametrize("status", STATUSES[1:])
def test_error_document_of_each_status_validates(fleet, status):
    image = ImageInfo(stamp=None, frame_id="", age_ms=None) if status == "stale_image" else None
    selection = Selection.error("req-9", "", status, [f"because {status}"], fleet, "ember-tiny", "abc", image)
    document = selection.to_document()
    validate_document(document)
    assert document["status"] == status and document["errors"] == [f"because {status}"]
    assert document["candidates"] == [] and document["reasoning"] is None and document["plan"] is None
    assert document["team"] == []
    assert document["latency_ms"] == {"preprocess": 0.0, "model": 0.0, "reasoning": 0.0}


def test_error_refuses_the_ok_status(fleet):
    with pytest.raises(ValueError, match="non-ok status"):
        Selection.error("req-9", "task", "ok", [], fleet, "ember-tiny", "abc")


def test_dataclasses_reject_values_the_schema_would_reject(fleet):
    with pytest.raises(ValueError, match="confidence must be in \\[0, 1\\], got 1.5"):
        Candidate(rank=1, robot_id="drone", robot_type="Drone", confidence=1.5, selected=True)
    with pytest.raises(ValueError, match="rank must be an integer >= 1, got 0"):
        Candidate(rank=0, robot_id="drone", robot_type="Drone", confidence=0.5, selected=True)
    selection = ok_selection(fleet, None, ["drone"])
    with pytest.raises(ValueError, match="unknown status 'maybe'"):
        dataclasses.replace(selection, status="maybe")
    with pytest.raises(ValueError, match="'ok' selection needs at least one candidate"):
        dataclasses.replace(selection, candidates=[])
    with pytest.raises(ValueError, match="latency_ms has keys"):
        dataclasses.replace(selection, latency_ms={"model": 1.0})
    with pytest.raises(ValueError, match="team names \\['helicopter'\\], not robots of the fleet"):
        dataclasses.replace(selection, team=["drone", "helicopter"])


def mutated(document: dict, change) -> dict:
    broken = copy.deepcopy(document)
    change(broken)
    return broken


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["candidates"][0].update(confidence=1.5), "confidence"),
        (lambda d: d.update(status="maybe", team=[]), "status"),
        (lambda d: d.update(comment="hi"), "comment"),
        (lambda d: d["plan"]["subtasks"][0].update(priority=1), "priority"),
        (lambda d: d["image"].update(width=64), "width"),
        (lambda d: d.update(candidates=[]), "candidates"),
        (lambda d: d.update(schema="ember.selection/2"), "schema"),
        (lambda d: d["candidates"][0].update(rank=0), "rank"),
        (lambda d: d.pop("latency_ms"), "latency_ms"),
        (lambda d: d.update(team=["drone", "drone"]), "team"),
        (lambda d: d.update(plan=None), "plan"),
    ],
    ids=["confidence-1.5", "unknown-status", "extra-key", "extra-subtask-key", "extra-image-key",
         "ok-without-candidates", "schema-version", "rank-0", "missing-latency", "team-twice", "ok-without-plan"],
)
def test_validator_rejects_bad_documents(ok_document, change, where):
    with pytest.raises(jsonschema.ValidationError) as caught:
        validate_document(mutated(ok_document, change))
    assert where in str(caught.value)


def test_error_document_may_have_no_candidates_but_ok_may_not(fleet):
    document = Selection.error("req-9", "task", "no_image", ["no camera frame"], fleet, "m", "s").to_document()
    validate_document(document)
    with pytest.raises(jsonschema.ValidationError):
        validate_document({**document, "status": "ok"})
    with pytest.raises(jsonschema.ValidationError):  # a non-ok result has no team
        validate_document({**document, "team": ["drone", "humanoid"]})


def test_schema_file_is_a_valid_draft_2020_12_schema_with_an_id():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"]
    assert schema["properties"]["status"]["enum"] == list(STATUSES)
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
