"""Golden outputs of the shipped model: selection documents for fixed requests and metrics on fixed task sets.

`python tests/golden_outputs.py` records them into tests/data/golden_outputs.json; tests/test_golden_outputs.py
checks the current code reproduces them. Re-record only for an intended change, and say which in the commit.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ember_core.pretrained import load_pretrained
from ember_core.request import SelectionRequest
from ember_core.robots_file import load_fleet
from ember_core.scenes import render_scene
from ember_core.selector import Selector

REPO = Path(__file__).resolve().parents[1]
GOLDEN_FILE = REPO / "tests" / "data" / "golden_outputs.json"
SNAKE_FLEET = "tests/data/robots_with_snake.yaml"
# (task, scene drawn for its camera image or None): each with a scene runs with and without the image.
REQUESTS = (
    ("Inspect the intake pipe of a flooded pump station for blockages", "murky water inside the flooded intake, under water"),
    ("Survey the roof of a tall warehouse for storm damage from above", "aerial view of a warehouse roof"),
    ("Deliver medicine to patient rooms along the hospital corridor", "indoor hospital corridor"),
    ("Carry survey equipment up a steep rocky trail to the ridge", "steep rocky trail outdoors"),
    ("Search the collapsed building for survivors and bring them water", None),
    ("Map the coral reef and collect water samples near the wreck", None),
    ("Crawl through the ventilation duct to find the loose cable", None),
    ("Survey the dam from above, then inspect its submerged spillway gates", None),
)
# (data file, robots file or None): scored text only, as `ember eval --split all --no-images` does.
TASK_SETS = (("tests/data/novel_tasks.jsonl", None), ("tests/data/snake_tasks.jsonl", SNAKE_FLEET))


def comparable(document: dict) -> dict:
    """A selection document less what changes from run to run (ids, stamps, latencies)."""
    document = {key: value for key, value in document.items() if key not in ("request_id", "stamp", "latency_ms")}
    if document["image"]:
        document["image"] = {key: value for key, value in document["image"].items() if key not in ("stamp", "age_ms")}
    return document


def selections() -> list[dict]:
    """The documents of every request, with the default fleet and with the snake fleet (top 5, with reasoning)."""
    out = []
    for robots in (None, SNAKE_FLEET):
        selector = Selector(robots_file=REPO / robots if robots else None, device="cpu")
        for task, scene in REQUESTS:
            for with_image in (False, True) if scene else (False,):
                image = np.asarray(render_scene(scene, 224), dtype=np.uint8) if with_image else None
                document = selector.select(SelectionRequest(task, image, top_k=5)).to_document()
                out.append({"robots": robots, "task": task, "scene": scene if with_image else None,
                            "document": comparable(document)})
    return out


def task_set_metrics() -> dict[str, dict[str, float]]:
    """The shipped model's metrics on each task set, as `ember eval` computes them."""
    from ember_train.data import load_records
    from ember_train.evaluate import score_records

    out = {}
    for data, robots in TASK_SETS:
        model, processor = load_pretrained(None, load_fleet(REPO / robots if robots else None))
        scores = score_records(model, processor, load_records(REPO / data, processor.fleet), use_images=False)
        out[data] = scores.metrics(processor.fleet.names, processor.config.calibration)
    return out


def main() -> int:
    GOLDEN_FILE.write_text(json.dumps({"selections": selections(), "metrics": task_set_metrics()}, indent=1,
                                      ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
