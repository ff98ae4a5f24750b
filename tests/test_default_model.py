"""The model shipped with Ember: loaded by default, recorded metrics reproduce, the image matters."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ember_core.calibration import Calibration
from ember_core.cli import main
from ember_core.pretrained import DEFAULT_MODEL_DIR, load_pretrained, resolve_model_dir
from ember_core.request import SelectionRequest
from ember_core.scenes import render_scene
from ember_core.selector import Selector
from ember_train.data import load_records, robot_targets, split_records
from ember_train.evaluate import score_records
from ember_train.public_data import PUBLIC_DATA

RECORDED = json.loads((DEFAULT_MODEL_DIR / "evaluation.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def selector() -> Selector:
    return Selector(device="cpu")


@pytest.fixture(scope="module")
def shipped(fleet):
    return load_pretrained(DEFAULT_MODEL_DIR, fleet=fleet)


def select(selector: Selector, task: str, image) -> dict:
    """The document ranking the whole fleet (vetoed robots come last, so a top 3 could leave them out)."""
    request = SelectionRequest(task, image, top_k=len(selector.fleet), return_reasoning=False)
    return selector.select(request).to_document()


def test_the_shipped_model_is_small_and_loaded_when_no_model_is_given(selector):
    size = sum(path.stat().st_size for path in DEFAULT_MODEL_DIR.iterdir())
    assert size <= 30e6
    assert resolve_model_dir(None) == DEFAULT_MODEL_DIR
    assert selector.model_name == f"embervlm-edge:{DEFAULT_MODEL_DIR.name}"
    assert selector.model_sha not in ("", "random-init")


def test_the_shipped_model_directory_is_a_current_save(shipped, fleet):
    """processor_config.json holds the calibration (no calibration.json); config.json the head's robot ids."""
    model, processor = shipped
    files = {path.name for path in DEFAULT_MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json", "fleet.json", "tokenizer.json"} <= files
    assert "calibration.json" not in files
    assert model.config.robot_ids == processor.fleet.ids == fleet.ids
    assert processor.config.calibration == Calibration(**RECORDED["calibration"])
    assert processor.config.calibration.margin > 0


def test_the_shipped_model_remembers_its_training_tasks(shipped, fleet):
    """Its gate compares a task with the public train split's tasks (heads.py), so it holds all of them, and
    its memory's vote needs their labelled robots."""
    if not PUBLIC_DATA.is_dir():
        pytest.skip(f"public dataset not found at {PUBLIC_DATA}")
    model, _ = shipped
    train = split_records(load_records(PUBLIC_DATA, fleet), seed=0).train
    assert model.robot_head.task_memory.shape == (len(train), 384)
    assert np.array_equal(model.robot_head.memory_robots.numpy(), robot_targets(train, fleet))
    task = train[0].task
    encoder = model.text_encoder
    assert model.robot_head.familiarity(encoder(**encoder.tokenize([task]))).item() > 0.95
    with torch.no_grad():  # and, for robots added after training, the same tasks by the new-robot encoder
        by_new_robot_encoder = model.new_robot_encoder(**encoder.tokenize([task]))
    assert torch.allclose(model.robot_head.new_robot_memory[0], by_new_robot_encoder[0], atol=2e-3)


def test_done_criterion_flooded_pump_station_is_underwater_first(capsys):
    assert main(["select", "--task", "Inspect the intake pipe of a flooded pump station for blockages", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["candidates"][0]["robot_id"] == "underwater_robot"


@pytest.mark.parametrize("mode", ["rendered_scenes", "text_only"])
def test_recorded_public_test_metrics_reproduce(mode, shipped, fleet):
    if not PUBLIC_DATA.is_dir():
        pytest.skip(f"public dataset not found at {PUBLIC_DATA}")
    model, processor = shipped
    test = split_records(load_records(PUBLIC_DATA, fleet), seed=0).test
    assert len(test) == RECORDED["num_tasks"]
    scores = score_records(model, processor, test, use_images=mode == "rendered_scenes")
    metrics = scores.metrics(fleet.names, processor.config.calibration)
    for key, value in RECORDED[mode].items():
        assert metrics[key] == pytest.approx(value, abs=1e-3), key


def test_the_scene_image_changes_the_ranking_of_an_ambiguous_task(selector):
    """The same ambiguous task with an underwater and a sky scene: the model's scene head names the
    scene, the plugins' feasibility rules apply to it, and the rankings differ."""
    task = "Inspect the pipeline"
    water = select(selector, task, render_scene("a reef deep under the sea"))
    sky = select(selector, task, render_scene("aerial view from the sky above a tower"))
    assert water["image"]["scene"] == ["underwater"] and "aerial" in sky["image"]["scene"]
    assert water["candidates"][0]["robot_id"] == "underwater_robot"
    drone = next(c for c in water["candidates"] if c["robot_id"] == "drone")
    assert drone["infeasible"] == ["Drone cannot operate under water"]
    underwater = next(c for c in sky["candidates"] if c["robot_id"] == "underwater_robot")
    assert underwater["infeasible"] and not underwater["selected"]
    assert sky["candidates"][0]["robot_id"] != "underwater_robot"


def explained(selector: Selector, task: str, image=None) -> dict:
    return selector.select(SelectionRequest(task, image, return_reasoning=True)).to_document()


def test_step_2_says_what_the_camera_shows_and_without_an_image_that_it_read_the_text(selector):
    task = "Inspect the pipeline"
    water = explained(selector, task, render_scene("a reef deep under the sea"))["reasoning"]
    sky = explained(selector, task, render_scene("aerial view from the sky above a tower"))["reasoning"]
    text = explained(selector, "Inspect the pipeline on the sea floor")["reasoning"]
    assert water["reasoning_valid"] and sky["reasoning_valid"] and text["reasoning_valid"]
    assert water["steps"][1] == "Step 2: Environment assessment: the camera image shows work under water."
    assert sky["steps"][1].startswith("Step 2: Environment assessment: the camera image shows work at height or from the air")
    assert text["steps"][1] == ("Step 2: Environment assessment: no camera image; from the task text, the work happens "
                                "under water.")


def test_a_two_robot_job_gets_its_team_and_an_ordered_plan(selector):
    document = explained(selector, "Survey the dam from above, then inspect its submerged spillway gates.")
    assert document["team"] == ["drone", "underwater_robot"]
    assert [c["robot_id"] for c in document["candidates"] if c["selected"]] == ["underwater_robot", "drone"]
    plan = document["plan"]
    assert plan["plan_valid"] and [(s["order"], s["robot_id"]) for s in plan["subtasks"]] == [
        (1, "drone"), (2, "underwater_robot")]
    assert plan["subtasks"][0]["description"] == "Survey the dam from above"
    assert document["reasoning"]["reasoning_valid"]
    assert document["reasoning"]["steps"][3].endswith("They work as a team: Drone, then Underwater Robot.")
