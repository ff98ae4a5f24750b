"""The explanation figures of `ember eval --explanations`, counted from documents; team records in JSONL data."""
from __future__ import annotations

import json

import pytest

from ember_train.data import DataError, TaskRecord, load_jsonl
from ember_train.explanation_eval import explanation_metrics


def document(steps, decision, selected, team=(), subtasks=(), plan_valid=True, valid=True, reasoning_ms=10.0):
    return {"reasoning": {"steps": steps, "decision": decision, "reasoning_valid": valid},
            "candidates": [{"robot_id": robot, "selected": robot in selected} for robot in
                           ("drone", "underwater_robot", "humanoid")],
            "team": list(team), "plan": {"subtasks": [{"robot_id": r} for r in subtasks], "plan_valid": plan_valid},
            "latency_ms": {"reasoning": reasoning_ms}}


STEP1 = "Step 1: Task analysis: the task asks to survey the dam from above."
STEP3 = "Step 3: Capability matching: Drone offers aerial survey, fastest; Underwater Robot offers flying."


def test_figures_count_validity_faithfulness_facts_and_task_reference(fleet):
    documents = [document([STEP1, "Step 2: x", STEP3, "Step 4: y"], ["drone", "underwater_robot"],
                          ["drone", "underwater_robot"], reasoning_ms=10.0),
                 document(["Step 1: Task analysis: the task asks to fly.", "Step 2: x", "Step 3: Capability matching: "
                           "Drone offers fastest", "Step 4: y"], ["drone"], ["drone", "humanoid"], valid=False,
                          reasoning_ms=30.0)]
    records = [TaskRecord("Survey the dam from above", ("drone",)), TaskRecord("Survey the dam from above", ("drone",))]
    metrics = explanation_metrics(documents, records, fleet)
    assert metrics["reasoning_validity"] == 0.5
    assert metrics["step4_faithfulness"] == 0.5  # the second names Drone only, the selection has Humanoid too
    assert metrics["step3_fact_precision"] == pytest.approx(3 / 4)  # "flying" is not on the Underwater Robot's card
    assert metrics["step1_task_reference"] == 0.5  # "fly" is neither the task's verb nor its object
    assert metrics["reasoning_ms_p50"] == 20.0
    assert metrics["false_team_rate"] == 0.0 and "team_jaccard" not in metrics


def test_team_figures_on_team_records(fleet):
    team = ("drone", "underwater_robot")
    records = [TaskRecord("Survey the dam, then dive", team, team=team)] * 3 + [TaskRecord("Fly", ("drone",))]
    documents = [document([STEP1], [], [], team=team, subtasks=team),
                 document([STEP1], [], [], team=team[::-1], subtasks=team[:1], plan_valid=False),
                 document([STEP1], [], []),
                 document([STEP1], [], [], team=("drone", "humanoid"), subtasks=("drone", "humanoid"))]
    metrics = explanation_metrics(documents, records, fleet)
    assert metrics["team_jaccard"] == pytest.approx(2 / 3)
    assert metrics["team_order"] == pytest.approx(1 / 3)
    assert metrics["plan_coverage"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert metrics["plan_validity"] == pytest.approx(2 / 3)  # of the three documents with a team
    assert metrics["false_team_rate"] == 1.0


def test_jsonl_team_records_keep_the_order_and_make_the_members_the_robots(tmp_path, fleet):
    path = tmp_path / "teams.jsonl"
    path.write_text(json.dumps({"task": "Survey the dam, then dive to the gates", "team": ["Underwater Robot", "Drone"]})
                    + "\n", encoding="utf-8")
    [record] = load_jsonl(path, fleet)
    assert record.team == ("underwater_robot", "drone") and record.robots == ("drone", "underwater_robot")
    for bad, message in (({"task": "x", "team": ["Drone"]}, "two robots or more"),
                         ({"task": "x", "team": ["Drone", "Humanoid"], "robots": ["Drone"]}, "not both")):
        path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=message):
            load_jsonl(path, fleet)


def test_ember_eval_explanations_prints_them_and_writes_them_into_the_report(tiny_model_dir, tmp_path, capsys):
    from ember_core.cli import main

    data = tmp_path / "jobs.jsonl"
    data.write_text(json.dumps({"task": "Survey the dam from above, then dive to its gates", "team": ["Drone",
                                "Underwater Robot"]}) + "\n" + json.dumps({"task": "Fetch my slippers",
                                                                           "robots": ["Humanoid"]}) + "\n")
    assert main(["eval", "--model", str(tiny_model_dir), "--data", str(data), "--split", "all", "--no-images",
                 "--explanations", "--json", "--report", str(tmp_path / "report")]) == 0
    explanations = json.loads(capsys.readouterr().out)["explanations"]
    assert explanations["reasoning_validity"] == 1.0 and explanations["step4_faithfulness"] == 1.0
    assert {"team_jaccard", "false_team_rate", "step3_fact_precision", "reasoning_ms_p50"} <= set(explanations)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["extra"]["explanations of the model"] == explanations
    assert report["extra"]["command"].endswith("--no-images --explanations")
