"""EmberProcessor: prompt features, training choices, collation, saving and loading, and the selection rule."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ember_core.calibration import Calibration
from ember_core.fleet import Fleet
from ember_core.images import InvalidInputError
from ember_core.model.structured import DecisionPoint, Walk
from ember_core.model.tokenizer import load_tokenizer
from ember_core.processor import (
    EmberProcessor,
    ProcessorConfig,
    saved_fleet,
    select_mask,
)
from ember_core.prompt import IMAGE, REASONING_START, SELECTION, card_text, fleet_text, selection_prompt

IMAGE_TOKENS = 4
MAX_PROMPT_TOKENS = 1000  # room for the default fleet's full cards and a task


@pytest.fixture(scope="module")
def processor(fleet) -> EmberProcessor:
    return EmberProcessor(ProcessorConfig(image_size=32, image_tokens=IMAGE_TOKENS, max_task_chars=60,
                                          max_prompt_tokens=MAX_PROMPT_TOKENS),
                          load_tokenizer(), fleet)


@pytest.fixture(scope="module")
def text_processor(fleet) -> EmberProcessor:
    """A processor with the MiniLM sentence encoder's tokenizer (no encoder weights are loaded)."""
    return EmberProcessor(ProcessorConfig(image_size=32, image_tokens=IMAGE_TOKENS, max_task_chars=200,
                                          max_prompt_tokens=MAX_PROMPT_TOKENS,
                                          text_encoder="minilm"), load_tokenizer(), fleet)


def pixels(processor: EmberProcessor, colour: tuple[int, int, int]) -> torch.Tensor:
    return processor.pixels(Image.new("RGB", (48, 40), colour))


def test_clean_task_collapses_whitespace_and_rejects_empty_or_long_tasks(processor):
    assert processor.clean_task("  Inspect\tthe \n\n roof  ") == "Inspect the roof"
    with pytest.raises(InvalidInputError, match="task is empty"):
        processor.clean_task(" \n ")
    with pytest.raises(InvalidInputError, match="task must be text, got NoneType"):
        processor.clean_task(None)
    with pytest.raises(InvalidInputError, match="task is 61 characters; the limit is 60"):
        processor.clean_task("x" * 61)


def test_pixels_are_resized_and_none_stays_none(processor):
    assert processor.pixels(None) is None
    red, blue = pixels(processor, (255, 0, 0)), pixels(processor, (0, 0, 255))
    assert red.shape == blue.shape == (3, 32, 32)
    assert red[0].mean() > blue[0].mean() and red[2].mean() < blue[2].mean()


def test_features_are_the_tokenised_selection_prompt(processor, fleet):
    features = processor.features("Inspect the roof")
    expected = processor.tokenizer(selection_prompt("Inspect the roof", fleet, IMAGE_TOKENS))["input_ids"]
    assert features.input_ids.tolist() == expected
    ids = features.input_ids.tolist()
    assert ids.count(processor.token_id(IMAGE)) == IMAGE_TOKENS and ids[-1] == processor.token_id(SELECTION)
    assert features.pixels is None and features.task_input_ids is None and features.choices is None


def test_the_image_follows_the_cards_so_the_prompt_before_it_is_the_same_in_every_request(processor, fleet):
    ids = processor.features("Inspect the roof").input_ids.tolist()
    first_slot = ids.index(processor.token_id(IMAGE))
    assert processor.tokenizer.decode(ids[:first_slot]) == fleet_text(fleet) + "\n"
    assert processor.tokenizer.decode(ids[first_slot + IMAGE_TOKENS:]).startswith("Task: Inspect the roof")
    assert processor.prompt_before_image_ids == ids[:first_slot]
    before_task = processor.prompt_before_task_ids
    assert before_task == ids[:len(before_task)] and processor.tokenizer.decode(before_task[first_slot:]) == (
        IMAGE * IMAGE_TOKENS + "Task:")
    assert processor.features("Carry the boxes").input_ids.tolist()[:first_slot] == ids[:first_slot]


def test_a_processor_saved_before_image_slots_existed_reads_the_image_first(processor, fleet, tmp_path):
    processor.save_pretrained(tmp_path)
    path = tmp_path / "processor_config.json"
    record = json.loads(path.read_text())
    assert record.pop("image_slots") == "after_cards"
    path.write_text(json.dumps(record))
    loaded = EmberProcessor.from_pretrained(tmp_path)
    assert loaded.config.image_slots == "before_cards" and loaded.prompt_before_image_ids == []
    ids = loaded.features("Inspect the roof").input_ids.tolist()
    assert ids == processor.tokenizer(selection_prompt("Inspect the roof", fleet, IMAGE_TOKENS,
                                                       image_slots="before_cards"))["input_ids"]
    assert ids[:IMAGE_TOKENS] == [processor.token_id(IMAGE)] * IMAGE_TOKENS
    path.write_text(json.dumps({**record, "image_slots": "between_the_lines"}))
    with pytest.raises(ValueError, match="field 'image_slots': 'between_the_lines' is not one of after_cards, before_cards"):
        EmberProcessor.from_pretrained(tmp_path)


def walk_for(processor, robots, points):
    """A walk after the decision: two fixed tokens, then decision points at the given offsets."""
    ids = processor.decision_ids(robots) + [11, 12, 13]
    return Walk(ids=ids, points=[DecisionPoint(position, [12, 40], [0.5, 0.0], 0) for position in points])


def test_training_features_are_the_prompt_then_the_walk_with_its_decision_points(processor):
    features = processor.features("Carry boxes across the warehouse")
    walk = walk_for(processor, ["robot_with_wheels", "humanoid"], [len(processor.decision_ids(["robot_with_wheels", "humanoid"]))])
    trained = processor.with_explanation(features, walk)
    prompt = features.input_ids.numel()
    # What training feeds after the prompt is what the Selector feeds at inference.
    assert trained.input_ids.tolist() == features.input_ids.tolist() + walk.ids
    assert walk.ids[len(walk.ids) - 4] == processor.token_id(REASONING_START)
    assert trained.choices == [(prompt + walk.points[0].position, [12, 40], [0.5, 0.0], 0)]
    assert features.choices is None  # the prompt-only features are not changed


def test_collate_pads_ids_and_choices_and_zero_fills_missing_images(processor):
    red = pixels(processor, (255, 0, 0))
    long = processor.with_explanation(processor.features("Inspect a long long pipeline today", red),
                                      walk_for(processor, ["drone"], [3, 4]))
    short = processor.with_explanation(processor.features("Go"), walk_for(processor, ["drone"], [3]))
    batch = processor.collate([long, short])
    lengths = [long.input_ids.numel(), short.input_ids.numel()]
    assert lengths[0] > lengths[1]
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, lengths[0])
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert torch.equal(batch["input_ids"][1, : lengths[1]], short.input_ids)
    assert (batch["input_ids"][1, lengths[1]:] == processor.tokenizer.pad_token_id).all()
    assert batch["choice_mask"].tolist() == [[True, True], [True, False]]
    assert batch["choice_positions"][1, 0].item() == short.choices[0][0]
    assert batch["choice_candidates"].tolist()[0] == [[12, 40], [12, 40]]
    assert batch["choice_relevance"][0, 0].tolist() == [0.5, 0.0]
    assert batch["has_image"].tolist() == [True, False]
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert torch.equal(batch["pixel_values"][0], red)
    assert torch.equal(batch["pixel_values"][1], torch.zeros(3, 32, 32))


def test_a_batch_without_images_has_no_pixel_entries(processor):
    batch = processor.collate([processor.features("Go"), processor.features("Inspect a roof")])
    assert set(batch) == {"input_ids", "attention_mask"}


def test_collate_pads_sentence_encoder_ids_like_encoding_the_tasks_together(text_processor):
    tasks = ["Dive to the reef", "Fly over the field and photograph every row of the orchard"]
    batch = text_processor.collate([text_processor.features(task) for task in tasks])
    together = text_processor.encode_tasks(tasks)
    mask = batch["task_attention_mask"]
    assert batch["task_input_ids"].shape[0] == 2 and mask[0].sum() < mask[1].sum()
    assert torch.equal(batch["task_input_ids"], together["input_ids"])
    assert torch.equal(batch["task_attention_mask"], together["attention_mask"])


def test_card_inputs_are_each_robots_card_in_fleet_order(processor, text_processor, fleet):
    cards = processor.card_inputs()
    assert set(cards) == {"input_ids", "attention_mask"} and cards["input_ids"].shape[0] == len(fleet)
    for row, robot in enumerate(fleet):
        ids = cards["input_ids"][row][cards["attention_mask"][row].bool()]
        assert processor.tokenizer.decode(ids) == card_text(robot)
    text = text_processor.card_inputs()
    owners = text["text_owner"].tolist()
    assert owners == sorted(owners) and set(owners) == set(range(len(fleet)))
    assert text["text_input_ids"].shape[0] == len(owners)


def test_save_and_from_pretrained_round_trip(processor, fleet, tmp_path):
    saved = EmberProcessor(ProcessorConfig(image_size=32, image_tokens=IMAGE_TOKENS, max_task_chars=60,
                                           max_prompt_tokens=MAX_PROMPT_TOKENS, calibration=Calibration(0.73, 1.0, 0.1)),
                           processor.tokenizer, fleet)
    saved.save_pretrained(tmp_path)
    loaded = EmberProcessor.from_pretrained(tmp_path)
    assert loaded.config == saved.config and loaded.config.calibration == Calibration(0.73, 1.0, 0.1)
    assert json.loads((tmp_path / "processor_config.json").read_text())["calibration"] == {"scale": 0.73, "margin": 1.0,
                                                                                           "bias": 0.1}
    assert loaded.fleet.ids == fleet.ids and loaded.fleet.hash == fleet.hash
    assert [robot.to_dict() for robot in saved_fleet(tmp_path)] == [robot.to_dict() for robot in fleet]
    text = "<|image|>Task: Inspect the café roof<|robot_selection|> Drone<|reasoning_start|>Step 1"
    assert loaded.tokenizer(text)["input_ids"] == processor.tokenizer(text)["input_ids"]
    assert len(loaded.tokenizer) == len(processor.tokenizer)
    assert torch.equal(loaded.features("Inspect the roof").input_ids, saved.features("Inspect the roof").input_ids)


def test_from_pretrained_with_another_fleet_uses_that_fleet(processor, fleet, tmp_path):
    processor.save_pretrained(tmp_path)
    smaller = Fleet(fleet.robots[:2])
    loaded = EmberProcessor.from_pretrained(tmp_path, smaller)
    assert loaded.fleet.ids == ["drone", "underwater_robot"] and saved_fleet(tmp_path).ids == fleet.ids


def test_a_broken_saved_processor_is_a_clear_error(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    (tmp_path / "processor_config.json").write_text('{"image_size": 32, "colour": "red"}')
    with pytest.raises(ValueError, match="processor_config.json: not a valid Ember processor config"):
        EmberProcessor.from_pretrained(tmp_path)
    (tmp_path / "fleet.json").write_text("[]")
    with pytest.raises(ValueError, match="fleet.json: not a valid fleet record"):
        saved_fleet(tmp_path)


# ---- the selection rule -------------------------------------------------------------------

def test_select_mask_always_selects_the_top_robot_and_others_at_the_threshold():
    probabilities = np.array([[0.2, 0.3, 0.1],    # nothing reaches the threshold: the best one anyway
                              [0.9, 0.5, 0.49],   # 0.5 reaches 0.5, 0.49 does not
                              [0.6, 0.7, 0.8]])
    assert select_mask(probabilities, 0.5).tolist() == [[False, True, False],
                                                         [True, True, False],
                                                         [True, True, True]]
    assert select_mask(probabilities, 0.75).tolist() == [[False, True, False],
                                                          [True, False, False],
                                                          [False, False, True]]


def test_select_mask_leaves_ineligible_robots_out():
    probabilities = np.array([[0.9, 0.8, 0.1], [0.9, 0.2, 0.3], [0.9, 0.8, 0.7]])
    eligible = np.array([[False, True, True], [False, True, True], [False, False, False]])
    # Row 0: the best robot is vetoed, the next eligible is selected; row 1: the best eligible one,
    # though below the threshold; row 2: nobody is eligible, nobody is selected.
    assert select_mask(probabilities, 0.5, eligible).tolist() == [[False, True, False],
                                                                   [False, False, True],
                                                                   [False, False, False]]


def test_select_mask_ties_go_to_the_robot_earlier_in_fleet_order():
    probabilities = np.array([[0.3, 0.4, 0.4, 0.1], [0.4, 0.4, 0.4, 0.4]])
    assert select_mask(probabilities, 0.9).tolist() == [[False, True, False, False],
                                                        [True, False, False, False]]
    eligible = np.array([[True, True, True, True], [False, True, True, True]])
    assert select_mask(probabilities, 0.9, eligible)[1].tolist() == [False, True, False, False]


# ---- checking a saved processor's files (issue 12) ---------------------------------------------

def _saved_processor_config(processor, directory, **changes) -> None:
    processor.save_pretrained(directory)
    path = directory / "processor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("temperature", [-1, 0, 1e-30, 1e-4, 1e4, True, "1.0", None])
def test_a_temperature_outside_its_bounds_is_refused(processor, tmp_path, temperature):
    """A model saved with one temperature: -1 would invert the ranking, 0 divide by zero, 1e-30 make every
    probability 0 or 1."""
    _saved_processor_config(processor, tmp_path, temperature=temperature)
    document = json.loads((tmp_path / "processor_config.json").read_text())
    del document["calibration"]
    (tmp_path / "processor_config.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"processor_config.json: not a valid Ember processor config \(field "
                                         r"'temperature': expected a (finite )?number"):
        ProcessorConfig.load(tmp_path)


@pytest.mark.parametrize("temperature", [1e-3, 0.4342484395888197, 1, 1e3])
def test_a_temperature_within_its_bounds_loads(processor, tmp_path, temperature):
    _saved_processor_config(processor, tmp_path, temperature=temperature)
    document = json.loads((tmp_path / "processor_config.json").read_text())
    del document["calibration"]
    (tmp_path / "processor_config.json").write_text(json.dumps(document))
    assert ProcessorConfig.load(tmp_path).calibration.scale == pytest.approx(1 / temperature)


@pytest.mark.parametrize("changes, message", [
    ({"calibration": {"scale": float("nan"), "margin": 0, "bias": 0}}, "not valid JSON (JSON has NaN"),
    ({"calibration": {"scale": 1, "margin": -1, "bias": 0}}, "field 'calibration.margin': expected a finite number in [0, 1000]"),
    ({"image_size": "32"}, "field 'image_size': expected an integer, got '32' (str)"),
    ({"image_tokens": 0}, "field 'image_tokens': expected an integer in [1, 10000000], got 0"),
    ({"max_task_chars": 1.5}, "field 'max_task_chars': expected an integer, got 1.5 (float)"),
    ({"text_encoder": 3}, "field 'text_encoder': expected a non-empty string or null, got 3"),
])
def test_processor_config_fields_are_checked(processor, tmp_path, changes, message):
    _saved_processor_config(processor, tmp_path, **changes)
    with pytest.raises(ValueError) as caught:
        ProcessorConfig.load(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'processor_config.json'}: ") and message in str(caught.value)


def test_a_fleet_record_with_duplicate_or_edited_ids_is_refused(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    path = tmp_path / "fleet.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "robots": record["robots"] + record["robots"][:1]}))
    with pytest.raises(ValueError, match="fleet.json: not a valid fleet record \\(field 'robots': robot id or name "
                                         "'drone' is used by two robot types\\)"):
        saved_fleet(tmp_path)
    path.write_text(json.dumps({**record, "ids": record["ids"][::-1]}))
    with pytest.raises(ValueError, match="fleet.json: not a valid fleet record \\(field 'ids': .* is not the ids of "
                                         "the cards in 'robots'"):
        saved_fleet(tmp_path)
    path.write_text(json.dumps({**record, "robots": [{**record["robots"][0], "colour": "red"}]}))
    with pytest.raises(ValueError, match="field 'robots\\[0\\]': unknown robot card field\\(s\\) 'colour'"):
        saved_fleet(tmp_path)
