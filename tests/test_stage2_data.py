"""Stage 2 data: LLaVA-Instruct conversations, `<image>` slots, labels on answers only, truncation, missing and corrupt images."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from ember_core.prompt import IMAGE
from ember_train.data import DataError
from ember_train.image_text import IGNORE_INDEX
from ember_train.stage2_data import (
    Conversation,
    Stage2Dataset,
    Stage2Index,
    build_stage2_index,
    collate_stage2,
    conversation_tokens,
)
from image_files import IMAGE_TOKENS, black_pixels, tiny_processor, write_corrupt, write_image

SLOTS = IMAGE * IMAGE_TOKENS
RECORDS = [
    {"id": "two-turns", "image": "red.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour is the square?"}, {"from": "gpt", "value": "It is red."},
        {"from": "human", "value": "Is it big?"}, {"from": "gpt", "value": "No, it is small."}]},
    {"id": "tag-last", "image": "green.png", "conversations": [
        {"from": "human", "value": "Describe it.\n<image>"}, {"from": "gpt", "value": "A green square."}]},
    {"id": "missing", "image": "gone.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "Nothing."}]},
    {"id": "text-only", "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}]},
    {"id": "corrupt", "image": "broken.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "Broken."}]},
    {"id": "no-tag", "image": "blue.jpg", "conversations": [
        {"from": "human", "value": "What is shown?"}, {"from": "gpt", "value": "Blue."}]},
]


@pytest.fixture(scope="module")
def processor(fleet):
    return tiny_processor(fleet)


@pytest.fixture
def llava(tmp_path: Path) -> tuple[Path, Path]:
    """A LLaVA-Instruct file and its image folder (one image missing, one corrupt)."""
    images = tmp_path / "coco" / "train2017"
    write_image(images / "red.jpg", (200, 30, 30))
    write_image(images / "green.png", (30, 200, 30))
    write_image(images / "blue.jpg", (30, 30, 200))
    write_corrupt(images / "broken.jpg")
    path = tmp_path / "llava" / "llava_instruct_150k.json"
    path.parent.mkdir()
    path.write_text(json.dumps(RECORDS), encoding="utf-8")
    return path, images


def by_id(index: Stage2Index, name: str):
    return next(c for c in index.conversations if c.id == name)


def test_index_leaves_out_conversations_whose_image_is_missing(llava, caplog):
    path, images = llava
    with caplog.at_level(logging.WARNING, logger="ember.train"):
        index = build_stage2_index(path.parent, image_root=images)
    assert [c.id for c in index.conversations] == ["two-turns", "tag-last", "text-only", "corrupt", "no-tag"]
    assert index.skipped == {"missing image": 1}
    assert f"{path}: 1 conversations left out, their image file is missing (the first: {images / 'gone.jpg'})" in caplog.text
    assert by_id(index, "two-turns").image == str(images / "red.jpg") and by_id(index, "text-only").image is None
    assert by_id(index, "two-turns").turns[1] == ("gpt", "It is red.")
    index.save(path.parent / "index.json")
    assert Stage2Index.load(path.parent / "index.json") == index


def test_image_paths_are_relative_to_the_json_file_by_default(llava):
    path, images = llava
    beside = images / "conversations.json"
    beside.write_text(json.dumps(RECORDS[:2]), encoding="utf-8")
    assert [c.image for c in build_stage2_index(beside).conversations] == [str(images / "red.jpg"),
                                                                          str(images / "green.png")]


def test_image_tag_becomes_the_image_slots_and_only_answers_carry_labels(llava, processor):
    index = build_stage2_index(llava[0], image_root=llava[1])
    tokenizer, eos = processor.tokenizer, processor.tokenizer.eos_token
    ids, labels = conversation_tokens(by_id(index, "two-turns"), processor)
    assert tokenizer.decode(ids) == (f"User:{SLOTS} What colour is the square?\nAssistant: It is red.{eos}"
                                     f"\nUser: Is it big?\nAssistant: No, it is small.{eos}")
    assert len(labels) == len(ids)
    assert all(label in (IGNORE_INDEX, token) for label, token in zip(labels, ids))
    assert tokenizer.decode([label for label in labels if label != IGNORE_INDEX]) == f" It is red.{eos} No, it is small.{eos}"

    ids, _ = conversation_tokens(by_id(index, "tag-last"), processor)
    assert tokenizer.decode(ids) == f"User: Describe it.{SLOTS}\nAssistant: A green square.{eos}"
    ids, _ = conversation_tokens(by_id(index, "no-tag"), processor)
    assert tokenizer.decode(ids) == f"{SLOTS}User: What is shown?\nAssistant: Blue.{eos}"
    ids, _ = conversation_tokens(by_id(index, "text-only"), processor)
    assert tokenizer.decode(ids) == f"{SLOTS}User: Say hi.\nAssistant: Hi.{eos}"  # the model fills them with no_image


def test_a_corrupt_image_is_skipped_with_a_warning_never_blanked(llava, processor, caplog):
    index = build_stage2_index(llava[0], image_root=llava[1])
    dataset = Stage2Dataset(index, processor, max_tokens=128)
    with caplog.at_level(logging.WARNING, logger="ember.train"):
        items = [dataset[i] for i in range(len(dataset))]
    assert "Stage 2 data: skipping sample 3 (unreadable image): image file " in caplog.text
    assert "broken.jpg is not a readable image" in caplog.text
    served = ["two-turns", "tag-last", "text-only", "no-tag", "no-tag"]
    black = black_pixels(processor)
    for item, name in zip(items, served):
        conversation = by_id(index, name)
        assert item.features.input_ids.tolist() == conversation_tokens(conversation, processor)[0]
        if conversation.image is None:
            assert item.features.pixels is None
        else:
            assert torch.equal(item.features.pixels, processor.pixels(conversation.image))
            assert not torch.allclose(item.features.pixels, black)
    assert dataset.unusable.summary() == "2 samples skipped: 1 missing image, 1 unreadable image"


def test_conversations_are_cut_to_the_context_and_skipped_when_nothing_is_left_to_learn(llava, processor, caplog):
    index = build_stage2_index(llava[0], image_root=llava[1])
    two_turns, short = by_id(index, "two-turns"), Conversation("short", None, (("gpt", "Hi."),))
    late_image = Conversation("late-image", two_turns.image, (("human", "Look " * 20 + "<image>"), ("gpt", "Red.")))
    ids, labels = conversation_tokens(two_turns, processor)
    first_answer = next(n for n, label in enumerate(labels) if label != IGNORE_INDEX)
    item = Stage2Dataset(index, processor, max_tokens=first_answer + 2)[0]
    assert item.features.input_ids.tolist() == ids[: first_answer + 2]
    assert item.labels.tolist() == labels[: first_answer + 2]

    late_ids, _ = conversation_tokens(late_image, processor)
    cut_slots = late_ids.index(processor.token_id(IMAGE)) + 2
    with caplog.at_level(logging.WARNING, logger="ember.train"):
        unanswered = Stage2Dataset(Stage2Index([two_turns, short], {}), processor, max_tokens=first_answer)
        cut_image = Stage2Dataset(Stage2Index([late_image, short], {}), processor, max_tokens=cut_slots)
        for dataset in (unanswered, cut_image):
            assert dataset[0].features.input_ids.tolist() == conversation_tokens(short, processor)[0]
    assert f"conversation two-turns: its first answer starts past the {first_answer}-token context" in caplog.text
    assert f"conversation late-image: its image slots end past the {cut_slots}-token context" in caplog.text
    assert unanswered.unusable.counts() == {"no answer within the context": 1}
    assert cut_image.unusable.counts() == {"image past the context": 1}


def test_a_batch_mixes_image_and_text_only_conversations(llava, processor):
    index = build_stage2_index(llava[0], image_root=llava[1])
    dataset = Stage2Dataset(index, processor, max_tokens=128)
    items = [dataset[2], dataset[0]]  # text-only, then two turns with an image
    batch = collate_stage2(items, processor)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "has_image", "labels"}
    assert batch["has_image"].tolist() == [False, True]
    assert batch["labels"].shape == batch["input_ids"].shape
    short = items[0].labels.numel()
    assert batch["labels"][0, short:].eq(IGNORE_INDEX).all() and batch["attention_mask"][0].sum() == short
    assert torch.equal(batch["labels"][1], items[1].labels)
    assert set(collate_stage2([dataset[2]], processor)) == {"input_ids", "attention_mask", "labels"}


@pytest.mark.parametrize("record, message", [
    ({"id": 1, "image": "red.jpg", "conversations": [{"from": "human", "value": "<image> hi"},
                                                     {"from": "gpt", "value": "<image>"}]}, "is an answer with <image>"),
    ({"id": 2, "image": "red.jpg", "conversations": [{"from": "human", "value": "<image><image>"},
                                                     {"from": "gpt", "value": "two"}]}, "2 <image> tags for one image"),
    ({"id": 3, "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "?"}]},
     "1 <image> tags for no image"),
    ({"id": 4, "conversations": [{"from": "system", "value": "hi"}]}, r"conversations\[0\] must be"),
    ({"id": 5, "conversations": [{"from": "human", "value": "hi"}]}, "no \"gpt\" turn"),
])
def test_malformed_conversations_are_errors_naming_the_record(tmp_path, record, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([RECORDS[3], record]), encoding="utf-8")
    with pytest.raises(DataError, match=rf"bad.json\[1\]: .*{message}"):
        build_stage2_index(path)
