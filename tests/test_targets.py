"""Generated reasoning targets and the training batches built from records."""
from __future__ import annotations

import pytest
import torch

from ember_core.model.checkpoint import EmberModel
from ember_core.model.config import preset
from ember_core.model.prompt import REASONING_START
from ember_core.reasoning import Subtask, parse_plan, parse_reasoning
from ember_train.batches import SelectionDataset, collate
from ember_train.data import TaskRecord
from ember_train.losses import IGNORE_INDEX
from ember_train.targets import plan_target, reasoning_target


@pytest.fixture(scope="module")
def bundle(fleet):
    return EmberModel.build(preset("tiny"), fleet)


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


def test_labels_mask_the_prompt_and_the_start_marker(bundle):
    record = TaskRecord("Carry boxes across the warehouse", ("robot_with_wheels",))
    item = SelectionDataset([record], bundle)[0]
    start = bundle.tokenizer.convert_tokens_to_ids(REASONING_START)
    position = item["input_ids"].tolist().index(start)
    assert (item["labels"][: position + 1] == IGNORE_INDEX).all()
    assert (item["labels"][position + 1:] == item["input_ids"][position + 1:]).all()
    assert item["labels"][-1] == bundle.tokenizer.eos_token_id
    assert item["targets"].tolist() == [0, 0, 0, 1, 0]
    assert item["has_image"] and item["pixel_values"].abs().sum() > 0


def test_prompt_only_items_have_no_labels(bundle):
    item = SelectionDataset([TaskRecord("Inspect a roof", ("drone",))], bundle, with_reasoning=False)[0]
    assert (item["labels"] == IGNORE_INDEX).all()


def test_image_dropout_is_deterministic_per_epoch_and_hides_the_image(bundle):
    records = [TaskRecord(f"Inspect bridge number {i}", ("drone",)) for i in range(40)]
    dataset = SelectionDataset(records, bundle, image_dropout=0.5, seed=3)
    first = [bool(dataset[i]["has_image"]) for i in range(40)]
    assert first == [bool(dataset[i]["has_image"]) for i in range(40)]
    assert 5 < sum(first) < 35
    hidden = first.index(False)
    assert dataset[hidden]["pixel_values"].abs().sum() == 0
    dataset.set_epoch(1)
    assert [bool(dataset[i]["has_image"]) for i in range(40)] != first


def test_collate_pads_ids_labels_and_mask(bundle):
    dataset = SelectionDataset([TaskRecord("Go", ("drone",)), TaskRecord("Inspect a long long pipeline today", ("underwater_robot",))], bundle)
    batch = collate([dataset[0], dataset[1]], pad_id=bundle.tokenizer.pad_token_id)
    lengths = [dataset[0]["input_ids"].numel(), dataset[1]["input_ids"].numel()]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    short = lengths.index(min(lengths))
    assert (batch["labels"][short, min(lengths):] == IGNORE_INDEX).all()
    assert batch["targets"].shape == (2, 5) and batch["pixel_values"].shape[0] == 2
    assert torch.equal(batch["has_image"], torch.tensor([True, True]))
