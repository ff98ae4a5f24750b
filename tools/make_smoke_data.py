"""Write tiny generated training data for all three stages, each in its real format, for `make smoke` and the tests.

Usage: python tools/make_smoke_data.py DIR

DIR/stage1/: COCO captions (annotations/captions_train2017.json, images in train2017/), VQA v2
(questions and annotations files, images in val2014/) and a CC3M-style JSONL export; DIR/stage2/:
LLaVA-Instruct conversations (llava_instruct.json, images beside it, two conversations text-only);
DIR/robot_tasks.jsonl: Stage 3 tasks in the project's JSONL format. The images are coloured shapes
drawn with PIL, and every caption, question and answer says what the image shows.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")
SIZE = 64
ROBOT_TASKS = {
    "underwater_robot": "Inspect the hull of ship {i} under the sea",
    "drone": "Survey rooftop {i} from above",
    "humanoid": "Open door {i} and greet visitors inside the office",
    "robot_with_wheels": "Carry boxes to shelf {i} in the warehouse",
    "robot_with_legs": "Climb rocky slope {i} with sensors",
}


def draw(path: Path, colour: str, shape: str) -> None:
    """A SIZE x SIZE image of one shape in one colour on white, in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    box = (12, 12, SIZE - 12, SIZE - 12)
    if shape == "circle":
        pen.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        pen.rectangle(box, fill=COLOURS[colour])
    else:
        pen.polygon([(SIZE // 2, 10), (SIZE - 10, SIZE - 10), (10, SIZE - 10)], fill=COLOURS[colour])
    image.save(path)


def pictures() -> list[tuple[str, str]]:
    """Every (colour, shape), in a fixed order."""
    return [(colour, shape) for colour in COLOURS for shape in SHAPES]


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def write_coco(root: Path) -> None:
    images, notes = [], []
    for number, (colour, shape) in enumerate(pictures(), 1):
        name = f"{number:012d}.jpg"
        draw(root / "train2017" / name, colour, shape)
        images.append({"id": number, "file_name": name, "width": SIZE, "height": SIZE})
        notes.append({"id": 2 * number, "image_id": number, "caption": f"A {colour} {shape} on a white background."})
        notes.append({"id": 2 * number + 1, "image_id": number, "caption": f"A single {shape}, coloured {colour}."})
    write_json(root / "annotations" / "captions_train2017.json", {"images": images, "annotations": notes})


def write_vqa(root: Path) -> None:
    questions, answers = [], []
    for number, (colour, shape) in enumerate(pictures(), 1):
        draw(root / "val2014" / f"COCO_val2014_{number:012d}.jpg", colour, shape)
        for offset, (question, answer) in enumerate([("What colour is the shape?", colour),
                                                     ("What shape is it?", shape)]):
            question_id = 10 * number + offset
            questions.append({"question_id": question_id, "image_id": number, "question": question})
            answers.append({"question_id": question_id, "image_id": number, "multiple_choice_answer": answer,
                            "answers": [{"answer": answer, "answer_id": 1}]})
    write_json(root / "v2_OpenEnded_mscoco_val2014_questions.json", {"data_subtype": "val2014", "questions": questions})
    write_json(root / "v2_mscoco_val2014_annotations.json", {"data_subtype": "val2014", "annotations": answers})


def write_jsonl_export(root: Path) -> None:
    lines = []
    for number, (colour, shape) in enumerate(pictures()):
        draw(root / "images" / f"{number}.png", colour, shape)
        lines.append(json.dumps({"image": f"images/{number}.png", "text": f"{colour} {shape} icon"}))
        lines.append(json.dumps({"image": f"images/{number}.png", "text": f"clip art: {shape}, {colour}"}))
    (root / "export.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_llava(root: Path) -> None:
    conversations = []
    for number, (colour, shape) in enumerate(pictures()):
        draw(root / "images" / f"{number}.jpg", colour, shape)
        conversations.append({"id": f"shape-{number}", "image": f"images/{number}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is in the picture?"},
            {"from": "gpt", "value": f"A {colour} {shape} on a white background."},
            {"from": "human", "value": "What colour is it?"},
            {"from": "gpt", "value": f"It is {colour}."}]})
    for number, (question, answer) in enumerate([("Name a shape with three sides.", "A triangle."),
                                                 ("Which colour is the sky on a clear day?", "Blue.")]):
        conversations.append({"id": f"text-{number}", "conversations": [{"from": "human", "value": question},
                                                                        {"from": "gpt", "value": answer}]})
    write_json(root / "llava_instruct.json", conversations)


def write_robot_tasks(path: Path) -> None:
    lines = [json.dumps({"task": template.format(i=i), "robots": [robot]})
             for robot, template in ROBOT_TASKS.items() for i in range(6)]
    lines += [json.dumps({"task": f"Find survivors in collapsed block {i}", "team": ["Drone", "Robot with Legs"]})
              for i in range(4)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="where to write the data (created if missing)")
    directory = parser.parse_args().directory
    write_coco(directory / "stage1" / "coco")
    write_vqa(directory / "stage1" / "vqa")
    write_jsonl_export(directory / "stage1" / "cc3m")
    write_llava(directory / "stage2")
    write_robot_tasks(directory / "robot_tasks.jsonl")
    print(f"smoke data written to {directory}: stage1/ (COCO, VQA v2, JSONL), stage2/llava_instruct.json, "
          f"robot_tasks.jsonl")


if __name__ == "__main__":
    main()
