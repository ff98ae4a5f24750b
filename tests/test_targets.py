"""Explanation targets (the slots answered by rule), teacher-forced decision points and training batches."""
from __future__ import annotations

import pytest
import torch

from ember_core.model.config import preset
from ember_core.model.structured import StructuredDecoder, no_relevance
from ember_core.pretrained import build_model
from ember_core.prompt import REASONING_START
from ember_core.reasoning import parse_reasoning, step3_facts
from ember_train.batches import SelectionDataset, collate, model_inputs
from ember_train.data import TaskRecord, robot_targets
from ember_train.targets import target_choice, target_context


@pytest.fixture(scope="module")
def processor(fleet):
    return build_model(preset("tiny"), fleet)[1]


def target_text(processor, task, robots, scene=None):
    walk = StructuredDecoder(processor.tokenizer, 0).teacher_forced(
        target_context(task, robots, processor.fleet, scene), processor.decision_ids(robots),
        lambda slot: target_choice(slot, task), no_relevance)
    return "".join(text for text, _ in walk.pieces), walk


def test_target_is_valid_names_the_task_and_cites_matching_card_facts(processor, fleet):
    text, walk = target_text(processor, "Inspect and repair a pipeline on the ocean floor", ["underwater_robot"])
    parsed = parse_reasoning(text, fleet, ["underwater_robot"])
    assert parsed.valid, parsed.problems
    assert parsed.steps[0] == "Step 1: Task analysis: the task asks to inspect and repair a pipeline on the ocean floor."
    assert "no camera image; from the task text, the work happens under water" in parsed.steps[1]
    facts = step3_facts(parsed.steps[2].split(":", 2)[2], fleet)
    assert facts[0].robot_id == "underwater_robot" and "inspection" in facts[0].phrase  # shares "inspe"
    assert all(fact.on_card for fact in facts)
    assert walk.points and all(0 <= p.chosen < len(p.candidates) for p in walk.points)


def test_step_1_starts_at_the_action_verb_and_a_scene_shown_is_step_2(processor, fleet):
    text, _ = target_text(processor, "Please survey the roof of the tower", ["drone"], scene=("aerial",))
    assert "Step 1: Task analysis: the task asks to survey the roof of the tower." in text
    assert "Step 2: Environment assessment: the camera image shows work at height or from the air." in text


def test_multi_robot_target_names_every_suitable_robot(processor, fleet):
    robots = ["drone", "robot_with_legs"]
    text, _ = target_text(processor, "Search for survivors in the rubble of a collapsed building", robots)
    parsed = parse_reasoning(text, fleet, robots)
    assert parsed.valid and parsed.decision == robots
    assert "Step 4: Decision: Select Drone and Robot with Legs." in text


def test_a_task_without_known_verbs_or_scene_still_gets_four_valid_steps(processor, fleet):
    text, _ = target_text(processor, "Pollination duty", ["drone"])
    parsed = parse_reasoning(text, fleet, ["drone"])
    assert parsed.valid and "the task asks to pollination duty." in parsed.steps[0]
    assert "the task text does not say where the work happens" in parsed.steps[1]


def test_robot_targets_follow_fleet_order(fleet):
    records = [TaskRecord("Carry boxes", ("robot_with_wheels",)),
               TaskRecord("Search rubble", ("drone", "robot_with_legs"))]
    assert robot_targets(records, fleet).tolist() == [[0, 0, 0, 1, 0], [1, 0, 0, 0, 1]]


def test_training_ids_are_what_inference_feeds_and_choices_point_into_them(processor):
    record = TaskRecord("Carry boxes across the warehouse", ("robot_with_wheels",))
    item = SelectionDataset([record], processor)[0]
    ids = item.features.input_ids.tolist()
    prompt = processor.features(record.task).input_ids.tolist()
    position = ids.index(processor.token_id(REASONING_START))
    assert ids[: position + 1] == prompt + processor.decision_ids(["robot_with_wheels"])
    choices = item.features.choices
    assert choices and all(position < point < len(ids) - 1 for point, _, _, _ in choices)
    # The token after each decision point is the candidate taken (an end is the first token of the text after the slot).
    for point, candidates, relevance, chosen in choices:
        assert len(relevance) == len(candidates) and 0 <= chosen < len(candidates)
        assert ids[point + 1] == candidates[chosen]
    assert item.targets.tolist() == [0, 0, 0, 1, 0]
    assert item.scene_targets is None
    assert item.features.pixels is not None and item.features.pixels.abs().sum() > 0


def test_prompt_only_items_have_no_choices_and_text_only_items_no_image(processor):
    record = TaskRecord("Inspect a roof", ("drone",))
    item = SelectionDataset([record], processor, with_reasoning=False, use_images=False)[0]
    assert item.features.choices is None and item.features.pixels is None
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


def test_collate_pads_ids_choices_and_mask_and_stacks_targets(processor):
    dataset = SelectionDataset([TaskRecord("Go", ("drone",)),
                                TaskRecord("Inspect a long long pipeline today", ("underwater_robot",))], processor)
    batch = collate([dataset[0], dataset[1]], processor)
    lengths = [dataset[0].features.input_ids.numel(), dataset[1].features.input_ids.numel()]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    points = [len(dataset[i].features.choices) for i in range(2)]
    assert batch["choice_mask"].sum(1).tolist() == points
    assert batch["choice_candidates"].shape[:2] == batch["choice_positions"].shape == (2, max(points))
    assert (batch["candidate_mask"].sum(-1)[batch["choice_mask"]] >= 2).all()  # a decision has two candidates or more
    assert batch["targets"].tolist() == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]]
    assert batch["pixel_values"].shape[0] == 2
    assert torch.equal(batch["has_image"], torch.tensor([True, True]))
    assert "scene_targets" not in batch
    inputs = model_inputs(batch, torch.device("cpu"))
    assert set(inputs) == {"input_ids", "attention_mask", "pixel_values", "has_image"}
