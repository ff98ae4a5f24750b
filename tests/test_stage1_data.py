"""Stage 1 data: COCO captions, VQA v2 and JSONL files in their real formats, caps, the shared index, missing and corrupt images."""
from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from ember_core.prompt import IMAGE
from ember_train.data import DataError
from ember_train.image_text import IGNORE_INDEX, shared_index
from ember_train.stage1_data import Stage1Dataset, Stage1Index, build_stage1_index, collate_stage1
from ember_train.stage1_sources import CaptionJsonl, CocoCaptions, VqaV2, find_stage1_sources
from image_files import IMAGE_TOKENS, black_pixels, tiny_processor, write_corrupt, write_image

RED, GREEN, BLUE, YELLOW = (200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)


@pytest.fixture(scope="module")
def processor(fleet):
    return tiny_processor(fleet)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A Stage 1 folder in the published layouts, with one missing and one corrupt COCO image, a missing
    JSONL image, an empty caption and an unanswered question."""
    coco = tmp_path / "coco"
    write_image(coco / "train2017" / "000000000001.jpg", RED)
    write_image(coco / "train2017" / "000000000002.png", GREEN)
    write_corrupt(coco / "train2017" / "000000000004.jpg")
    write_json(coco / "annotations" / "captions_train2017.json", {
        "images": [{"id": n, "file_name": f"00000000000{n}.{'png' if n == 2 else 'jpg'}"} for n in (1, 2, 3, 4)],
        "annotations": [{"image_id": 1, "caption": "A red square."}, {"image_id": 1, "caption": "Something  red"},
                        {"image_id": 2, "caption": "A green square"}, {"image_id": 3, "caption": "Not on disk"},
                        {"image_id": 4, "caption": "A broken file"}, {"image_id": 2, "caption": "  "}],
    })
    vqa = tmp_path / "vqa"
    write_image(vqa / "val2014" / "COCO_val2014_000000000001.jpg", BLUE)
    write_image(vqa / "val2014" / "COCO_val2014_000000000002.jpg", YELLOW)
    write_json(vqa / "v2_OpenEnded_mscoco_val2014_questions.json", {"data_subtype": "val2014", "questions": [
        {"question_id": 10, "image_id": 1, "question": "What colour is it?"},
        {"question_id": 11, "image_id": 2, "question": "Is it yellow?"},
        {"question_id": 12, "image_id": 2, "question": "Never answered?"}]})
    write_json(vqa / "v2_mscoco_val2014_annotations.json", {"annotations": [
        {"question_id": 10, "image_id": 1, "multiple_choice_answer": "blue", "answers": [{"answer": "blue"}]},
        {"question_id": 11, "image_id": 2, "multiple_choice_answer": "yes", "answers": [{"answer": "yes"}]}]})
    write_image(tmp_path / "cc3m" / "images" / "0.jpg", GREEN)
    write_image(tmp_path / "cc3m" / "images" / "1.png", BLUE)
    write_jsonl(tmp_path / "cc3m" / "export.jsonl", [
        {"image": "images/0.jpg", "text": "grass in spring", "url": "http://example.com/0.jpg"},
        {"image": "images/gone.jpg", "text": "a lost picture"},
        {"image": "images/1.png", "text": "a blue sky"}])
    return tmp_path


def test_sources_are_found_in_their_published_layouts(data_dir):
    sources = find_stage1_sources(data_dir)
    assert sources == [
        CaptionJsonl(data_dir / "cc3m" / "export.jsonl"),
        CocoCaptions(data_dir / "coco" / "annotations" / "captions_train2017.json", data_dir / "coco" / "train2017"),
        VqaV2(data_dir / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json",
              data_dir / "vqa" / "v2_mscoco_val2014_annotations.json", data_dir / "vqa" / "val2014"),
    ]
    assert find_stage1_sources(data_dir / "cc3m" / "export.jsonl") == [sources[0]]


def test_index_keeps_samples_with_an_existing_image_and_counts_the_rest(data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="ember.train"):
        index = build_stage1_index(find_stage1_sources(data_dir))
    assert [(Path(s.image).name, s.text) for s in index.samples] == [
        ("0.jpg", "grass in spring"), ("1.png", "a blue sky"),
        ("000000000001.jpg", "A red square."), ("000000000001.jpg", "Something red"),
        ("000000000002.png", "A green square"), ("000000000004.jpg", "A broken file"),
        ("COCO_val2014_000000000001.jpg", "What colour is it? blue"), ("COCO_val2014_000000000002.jpg", "Is it yellow? yes"),
    ]
    assert index.skipped == {"missing image": 2, "no text": 2}
    assert "jsonl:export.jsonl: 1 samples left out, their image file is missing (the first: " in caplog.text
    assert "coco:captions_train2017.json: 1 samples left out" in caplog.text


def test_caps_keep_a_seeded_choice_of_existing_images_in_file_order(tmp_path):
    write_image(tmp_path / "a.png", RED)
    rows = [{"image": "a.png" if n % 2 else "missing.png", "text": f"caption {n}"} for n in range(40)]
    source = CaptionJsonl(write_jsonl(tmp_path / "many.jsonl", rows))

    def texts(**caps) -> list[str]:
        return [s.text for s in build_stage1_index([source], **caps).samples]

    kept = texts(per_source_cap=5, seed=0)
    assert len(kept) == 5 and kept == texts(per_source_cap=5, seed=0)
    assert all(int(text.split()[1]) % 2 for text in kept)  # only samples whose image exists
    assert kept == sorted(kept, key=lambda text: int(text.split()[1]))
    assert len({tuple(texts(per_source_cap=5, seed=seed)) for seed in range(4)}) > 1
    assert len(texts()) == 20

    other = CaptionJsonl(write_jsonl(tmp_path / "more.jsonl", [dict(row, text=f"other {n}") for n, row in enumerate(rows)]))
    index = build_stage1_index([source, other], per_source_cap=10, total_cap=12, seed=3)
    assert len(index.samples) == 12
    assert index.samples == build_stage1_index([source, other], per_source_cap=10, total_cap=12, seed=3).samples
    with pytest.raises(ValueError, match="caps must be at least 1"):
        build_stage1_index([source], per_source_cap=0)


def test_rank_zero_builds_the_index_and_the_other_ranks_read_it(data_dir, tmp_path):
    path, waited = tmp_path / "index" / "stage1.json", []
    built = shared_index(path, lambda: build_stage1_index(find_stage1_sources(data_dir)), Stage1Index.load,
                         is_main=True, barrier=lambda: waited.append("main"))

    def never_built() -> Stage1Index:
        raise AssertionError("only the main process builds the index")

    read = shared_index(path, never_built, Stage1Index.load, is_main=False, barrier=lambda: waited.append("other"))
    assert read == built and waited == ["main", "other"]
    (tmp_path / "other.json").write_text('{"kind": "something else"}')
    with pytest.raises(DataError, match="not a ember.stage1-index/1 index; delete it"):
        Stage1Index.load(tmp_path / "other.json")


def test_a_corrupt_image_is_skipped_with_a_warning_never_blanked(data_dir, processor, caplog):
    index = build_stage1_index(find_stage1_sources(data_dir))
    dataset = Stage1Dataset(index, processor, max_tokens=64)
    with caplog.at_level(logging.WARNING, logger="ember.train"):
        items = [dataset[i] for i in range(len(dataset))]
    corrupt = next(n for n, s in enumerate(index.samples) if s.text == "A broken file")
    assert f"Stage 1 data: skipping sample {corrupt} (unreadable image): image file " in caplog.text
    assert "000000000004.jpg is not a readable image" in caplog.text
    served = list(range(len(dataset)))
    served[corrupt] = corrupt + 1  # the next usable sample takes its place
    black = black_pixels(processor)
    for item, position in zip(items, served):
        sample = index.samples[position]
        assert torch.equal(item.features.pixels, processor.pixels(sample.image))
        assert not torch.allclose(item.features.pixels, black)
        assert processor.tokenizer.decode(item.caption_ids) == sample.text + processor.tokenizer.eos_token
    assert dataset.unusable.counts() == {"missing image": 2, "no text": 2, "unreadable image": 1}
    assert dataset.unusable.summary() == "5 samples skipped: 2 missing image, 2 no text, 1 unreadable image"


def test_items_are_image_slots_then_the_caption_with_labels_on_the_caption(data_dir, processor):
    index = build_stage1_index([CaptionJsonl(data_dir / "cc3m" / "export.jsonl")])
    item = Stage1Dataset(index, processor, max_tokens=64)[1]
    tokenizer = processor.tokenizer
    assert tokenizer.decode(item.features.input_ids) == IMAGE * IMAGE_TOKENS + "a blue sky" + tokenizer.eos_token
    assert item.labels[:IMAGE_TOKENS].tolist() == [IGNORE_INDEX] * IMAGE_TOKENS
    assert torch.equal(item.labels[IMAGE_TOKENS:], item.caption_ids)

    cut = Stage1Dataset(Stage1Index([index.samples[0]] * 2, {}), processor, max_tokens=IMAGE_TOKENS + 3)[0]
    assert cut.features.input_ids.numel() == IMAGE_TOKENS + 3
    assert tokenizer.decode(cut.caption_ids) == "grass in" + tokenizer.eos_token
    with pytest.raises(ValueError, match="no room for a caption"):
        Stage1Dataset(index, processor, max_tokens=IMAGE_TOKENS + 1)


def test_a_batch_pads_ids_labels_and_captions(data_dir, processor):
    index = build_stage1_index([CaptionJsonl(data_dir / "cc3m" / "export.jsonl")])
    dataset = Stage1Dataset(index, processor, max_tokens=64)
    batch = collate_stage1([dataset[0], dataset[1]], processor)
    lengths = [dataset[n].labels.numel() for n in (0, 1)]
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "has_image", "labels",
                          "caption_input_ids", "caption_attention_mask"}
    assert batch["input_ids"].shape == batch["labels"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["caption_attention_mask"].sum(1).tolist() == [n - IMAGE_TOKENS for n in lengths]
    short = lengths.index(min(lengths))
    assert batch["labels"][short, min(lengths):].eq(IGNORE_INDEX).all()
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["has_image"].all()


def test_what_dataloader_workers_skip_shows_in_the_main_process(data_dir, processor):
    dataset = Stage1Dataset(build_stage1_index(find_stage1_sources(data_dir)), processor, max_tokens=64)
    loader = DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=partial(collate_stage1, processor=processor))
    assert sum(batch["input_ids"].shape[0] for batch in loader) == len(dataset)
    assert dataset.unusable.counts()["unreadable image"] == 1


def test_malformed_annotation_files_are_errors_naming_the_file(tmp_path):
    coco = write_json(tmp_path / "captions_x.json", {"images": [{"id": 1, "file_name": "a.jpg"}],
                                                     "annotations": [{"image_id": 2, "caption": "x"}]})
    with pytest.raises(DataError, match=r"captions_x.json: annotations\[0\] names image_id 2"):
        CocoCaptions(coco, tmp_path).read()
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"image": "a.jpg", "text": "fine"}\n{"text": "no image"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected an object with an 'image' path"):
        CaptionJsonl(lines).read()
    with pytest.raises(DataError, match="no image folder named 'x'"):
        find_stage1_sources(tmp_path)
    absent = write_jsonl(tmp_path / "absent.jsonl", [{"image": "a.jpg", "text": "never written"}])
    with pytest.raises(DataError, match="no Stage 1 sample with an existing image in jsonl:absent.jsonl"):
        build_stage1_index([CaptionJsonl(absent)])
