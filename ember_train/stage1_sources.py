"""Stage 1 sources in their published formats (COCO captions, VQA v2, JSONL image-text exports), and finding them in a folder.

Each source reads its annotation files into image-text pairs with the image's full path; nothing
here opens an image or checks that it exists (the index does, see `ember_train.stage1_data`).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ember_train.data import DataError
from ember_train.image_text import read_json_file

log = logging.getLogger("ember.train")

COCO_PATTERN = "captions_*.json"  # captions_train2017.json, captions_val2014.json ...
VQA_QUESTIONS_SUFFIX = "_questions.json"  # v2_OpenEnded_mscoco_train2014_questions.json
VQA_ANNOTATIONS_SUFFIX = "_annotations.json"  # v2_mscoco_train2014_annotations.json


@dataclass(frozen=True)
class Caption:
    """One Stage 1 sample: an image file's path, the text that goes with it, and the name of its source."""

    image: str
    text: str
    source: str


@dataclass(frozen=True)
class CocoCaptions:
    """COCO captions: a captions_*.json file ({"images": [{"id", "file_name"}], "annotations":
    [{"image_id", "caption"}]}) and the folder of its images; one sample per caption."""

    annotations: Path
    images: Path

    @property
    def name(self) -> str:
        return f"coco:{self.annotations.name}"

    def read(self) -> tuple[list[Caption], int]:
        """The samples, and how many captions were empty."""
        data = read_json_file(self.annotations, "COCO captions annotations (captions_*.json)")
        files = {image["id"]: image["file_name"] for image in _records(data, "images", ("id", "file_name"),
                                                                        self.annotations)}
        captions, empty = [], 0
        for number, note in enumerate(_records(data, "annotations", ("image_id", "caption"), self.annotations)):
            if note["image_id"] not in files:
                raise DataError(f"{self.annotations}: annotations[{number}] names image_id {note['image_id']!r}, "
                                f"which its 'images' list does not have")
            text = _text(note["caption"])
            if text:
                captions.append(Caption(str(self.images / files[note["image_id"]]), text, self.name))
            else:
                empty += 1
        return captions, empty


@dataclass(frozen=True)
class VqaV2:
    """VQA v2: a questions file ({"data_subtype", "questions": [{"question_id", "image_id", "question"}]}), its
    annotations file ({"annotations": [{"question_id", "multiple_choice_answer"}]}) and the COCO image folder
    (files COCO_<data_subtype>_<image_id:012d>.jpg). A sample's text is the question, then the answer."""

    questions: Path
    annotations: Path
    images: Path

    @property
    def name(self) -> str:
        return f"vqa:{self.questions.name}"

    def read(self) -> tuple[list[Caption], int]:
        """The samples, and how many questions had no answer."""
        notes = read_json_file(self.annotations, "VQA v2 annotations (*_annotations.json)")
        answers = {note["question_id"]: _text(note["multiple_choice_answer"]) for note in
                   _records(notes, "annotations", ("question_id", "multiple_choice_answer"), self.annotations)}
        data = read_json_file(self.questions, "VQA v2 questions (*_questions.json)")
        subtype = data.get("data_subtype") if isinstance(data, dict) else None
        captions, unanswered = [], 0
        for question in _records(data, "questions", ("question_id", "image_id", "question"), self.questions):
            answer, text = answers.get(question["question_id"]), _text(question["question"])
            if not answer or not text:
                unanswered += 1
                continue
            if not isinstance(question["image_id"], int):
                raise DataError(f"{self.questions}: question {question['question_id']!r} has image_id "
                                f"{question['image_id']!r}; COCO image ids are integers")
            image = self.images / _coco_file_name(question["image_id"], subtype)
            captions.append(Caption(str(image), f"{text} {answer}", self.name))
        return captions, unanswered


@dataclass(frozen=True)
class CaptionJsonl:
    """A JSONL export of image-text pairs (CC3M and the like), one {"image": path, "text": caption} per line;
    other keys are ignored. Image paths are relative to `root`, by default the file's folder."""

    path: Path
    root: Path | None = None

    @property
    def name(self) -> str:
        return f"jsonl:{self.path.name}"

    def read(self) -> tuple[list[Caption], int]:
        """The samples, and how many lines had an empty text."""
        root = self.root if self.root is not None else self.path.parent
        captions, empty = [], 0
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(f"{self.path}: file not found") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            item = _jsonl_item(line, f"{self.path}:{number}")
            text = _text(item["text"])
            if text:
                captions.append(Caption(str(root / item["image"]), text, self.name))
            else:
                empty += 1
        return captions, empty


Stage1Source = Union[CocoCaptions, VqaV2, CaptionJsonl]


def find_stage1_sources(path: str | os.PathLike) -> list[Stage1Source]:
    """The Stage 1 sources in a data folder (searched through), or the one source a .jsonl file is.

    COCO: every captions_<split>.json, its images in a folder named <split>. VQA v2: every
    *_<split>_questions.json with the *_<split>_annotations.json beside it (a questions file without
    one, like the test split's, is left out with a warning), images in a folder named <split>. An image
    folder is looked for beside the annotation file, beside its folder, then anywhere under `path`.
    JSONL: every *.jsonl file, image paths relative to its folder.
    """
    root = Path(path)
    if root.is_file() and root.suffix == ".jsonl":
        return [CaptionJsonl(root)]
    if not root.is_dir():
        raise DataError(f"{root}: not a folder or a .jsonl file; pass the Stage 1 data folder")
    files, folders = _walk(root)
    sources: list[Stage1Source] = []
    for file in files:
        if file.match(COCO_PATTERN):
            split = file.stem.removeprefix("captions_")
            sources.append(CocoCaptions(file, _image_folder(file, split, folders, root)))
        elif file.name.endswith(VQA_QUESTIONS_SUFFIX):
            split = file.name.removesuffix(VQA_QUESTIONS_SUFFIX).rsplit("_", 1)[-1]
            annotations = sorted(file.parent.glob(f"*_{split}{VQA_ANNOTATIONS_SUFFIX}"))
            if len(annotations) != 1:
                log.warning("%s: left out: it needs one *_%s%s file beside it, found %d", file, split,
                            VQA_ANNOTATIONS_SUFFIX, len(annotations))
                continue
            sources.append(VqaV2(file, annotations[0], _image_folder(file, split, folders, root)))
        elif file.suffix == ".jsonl":
            sources.append(CaptionJsonl(file))
    if not sources:
        raise DataError(f"{root}: no Stage 1 data found (looked for {COCO_PATTERN}, *{VQA_QUESTIONS_SUFFIX} and "
                        f"*.jsonl files)")
    return sources


def _walk(root: Path) -> tuple[list[Path], dict[str, list[Path]]]:
    """The .json/.jsonl files under `root` in sorted order, and its folders by name."""
    files, folders = [], {}
    for directory, names, file_names in os.walk(root):
        names.sort()
        for name in names:
            folders.setdefault(name, []).append(Path(directory, name))
        files += [Path(directory, name) for name in file_names if name.endswith((".json", ".jsonl"))]
    return sorted(files), folders


def _image_folder(annotations: Path, split: str, folders: dict[str, list[Path]], root: Path) -> Path:
    for candidate in (annotations.parent / split, annotations.parent.parent / split, *folders.get(split, [])):
        if candidate.is_dir():
            return candidate
    raise DataError(f"{annotations}: no image folder named {split!r} beside it, beside its folder or under {root}; "
                    f"put its images there")


def _coco_file_name(image_id: int, subtype: Any) -> str:
    """A COCO image's file name: COCO_<subtype>_<id>.jpg in the 2014 release VQA v2 uses, <id>.jpg without a subtype."""
    return f"COCO_{subtype}_{image_id:012d}.jpg" if isinstance(subtype, str) else f"{image_id:012d}.jpg"


def _records(data: Any, key: str, fields: tuple[str, ...], path: Path) -> list[dict[str, Any]]:
    """data[key], checked to be a list of objects that have every one of `fields`."""
    records = data.get(key) if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON object with a {key!r} list")
    for number, record in enumerate(records):
        if not isinstance(record, dict) or any(field not in record for field in fields):
            raise DataError(f"{path}: {key}[{number}] is not an object with {', '.join(fields)}")
    return records


def _jsonl_item(line: str, where: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not valid JSON ({err.msg}); write one JSON object per line") from None
    if not isinstance(item, dict) or not isinstance(item.get("image"), str) or not item["image"].strip():
        raise DataError(f"{where}: expected an object with an 'image' path and a 'text'")
    if not isinstance(item.get("text"), str):
        raise DataError(f"{where}: 'text' must be a string, got {type(item.get('text')).__name__}")
    return item


def _text(value: Any) -> str:
    """A caption, question or answer with its whitespace collapsed ("" for anything but text)."""
    return " ".join(value.split()) if isinstance(value, str) else ""
