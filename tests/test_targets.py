"""Generated reasoning targets and the training batches built from records."""
from __future__ import annotations

import pytest
import torch

from ember_core.model.config import preset
from ember_core.pretrained import build_model
from ember_core.processor import IGNORE_INDEX
from ember_core.prompt import REASONING_START
from ember_core.reasoning import Subtask, parse_plan, parse_reasoning
from ember_train.batches import SelectionDataset, collate, model_inputs
from ember_train.data import TaskRecord, robot_targets
from ember_train.targets import plan_target, reasoning_target


@pytest.fixture(scope="module")
def processor(fleet):
    return build_model(preset("tiny"), fleet)[1]


def test_reasoning_target_is_valid_and_decides_the_gold_set(fleet):
    text = reasoning_target("Inspect and repair a pipeline on the ocean floor", ("underwater_robot",), fleet)
    parsed = parse_reasoning(text, fleet, ["underwater_robot"])
    assert parsed.valid, parsed.problems
    assert parsed.decision == ["underwater_robot"]
    assert "inspect and repair" in parsed.steps[0]
    assert "under water" in parsed.steps[1]
    assert "Underwater Robot offers underwater navigation" in parsed.steps[2] or "marine" in parsed.steps[2]


def test_multi_robot_target_names_every_suitable_robot(fleet):
    robots = ("drone", "robot_with_legs")
    text = reasoning_target("Search for survivors in the rubble of a collapsed building", robots, fleet)
    parsed = parse_reasoning(text, fleet, list(robots))
    assert parsed.valid and parsed.decision == list(robots)
    assert "Step 4: Decision: Select Drone and Robot with Legs." in text


def test_a_task_without_known_verbs_or_scene_still_gets_four_valid_steps(fleet):
    text = reasoning_target("Pollination duty", ("drone",), fleet)
    parsed = parse_reasoning(text, fleet, ["drone"])
    assert parsed.valid and "the environment is not specified" in parsed.steps[1]


def test_plan_target_round_trips_and_is_empty_without_plan(fleet):
    plan = (Subtask(1, 1, "Fly over the site", "drone", "Drone"),
            Subtask(2, 2, "Walk the ramps", "robot_with_legs", "Robot with Legs", [1]))
    assert parse_plan(plan_target(plan, fleet), fleet).subtasks == list(plan)
    assert plan_target((), fleet) == ""


def test_robot_targets_follow_fleet_order(fleet):
    records = [TaskRecord("Carry boxes", ("robot_with_wheels",)),
               TaskRecord("Search rubble", ("drone", "robot_with_legs"))]
    assert robot_targets(records, fleet).tolist() == [[0, 0, 0, 1, 0], [1, 0, 0, 0, 1]]


def test_labels_mask_the_prompt_and_the_start_marker(processor):
    record = TaskRecord("Carry boxes across the warehouse", ("robot_with_wheels",))
    item = SelectionDataset([record], processor)[0]
    ids, labels = item.features.input_ids, item.features.labels
    position = ids.tolist().index(processor.token_id(REASONING_START))
    # The prompt is exactly what inference feeds, the decision after it is what the Selector feeds.
    prompt = processor.features(record.task).input_ids.tolist()
    assert ids.tolist()[: position + 1] == prompt + processor.decision_ids(["robot_with_wheels"])
    assert (labels[: position + 1] == IGNORE_INDEX).all()
    assert (labels[position + 1:] == ids[position + 1:]).all()
    assert labels[-1] == processor.tokenizer.eos_token_id
    assert item.targets.tolist() == [0, 0, 0, 1, 0]
    assert item.scene_targets is None
    assert item.features.pixels is not None and item.features.pixels.abs().sum() > 0


def test_prompt_only_items_have_no_labels_and_text_only_items_no_image(processor):
    record = TaskRecord("Inspect a roof", ("drone",))
    item = SelectionDataset([record], processor, with_reasoning=False, use_images=False)[0]
    assert item.features.labels is None and item.features.pixels is None
    assert torch.equal(item.features.input_ids, processor.features(record.task).input_ids)


def test_scene_targets_come_from_the_task_text(processor):
    records = [TaskRecord("Survey the coral reef under the sea", ("underwater_robot",)),
               TaskRecord("Fly over the rooftop of the tower", ("drone",))]
    dataset = SelectionDataset(records, processor, scene_tags=("aerial", "underwater"))
    assert [dataset[i].scene_targets.tolist() for i in range(2)] == [[0.0, 1.0], [1.0, 0.0]]
    assert collate([dataset[0], dataset[1]], processor)["scene_targets"].tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_image_dropout_is_deterministic_per_epoch_and_hides_the_image(processor):
    records = [TaskRecord(f"Inspect bridge number {i}", ("drone",)) for i in range(40)]
    dataset = SelectionDataset(records, processor, image_dropout=0.5, seed=3)
    first = [dataset[i].features.pixels is not None for i in range(40)]
    assert first == [dataset[i].features.pixels is not None for i in range(40)]
    assert 5 < sum(first) < 35
    hidden, shown = first.index(False), first.index(True)
    batch = collate([dataset[shown], dataset[hidden]], processor)
    assert batch["has_image"].tolist() == [True, False]
    assert batch["pixel_values"][1].abs().sum() == 0 and batch["pixel_values"][0].abs().sum() > 0
    dataset.set_epoch(1)
    assert [dataset[i].features.pixels is not None for i in range(40)] != first


def test_collate_pads_ids_labels_and_mask_and_stacks_targets(processor):
    dataset = SelectionDataset([TaskRecord("Go", ("drone",)),
                                TaskRecord("Inspect a long long pipeline today", ("underwater_robot",))], processor)
    batch = collate([dataset[0], dataset[1]], processor)
    lengths = [dataset[0].features.input_ids.numel(), dataset[1].features.input_ids.numel()]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    short = lengths.index(min(lengths))
    assert (batch["labels"][short, min(lengths):] == IGNORE_INDEX).all()
    assert batch["targets"].tolist() == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]]
    assert batch["pixel_values"].shape[0] == 2
    assert torch.equal(batch["has_image"], torch.tensor([True, True]))
    assert "scene_targets" not in batch
    inputs = model_inputs(batch, torch.device("cpu"))
    assert set(inputs) == {"input_ids", "attention_mask", "pixel_values", "has_image"}
