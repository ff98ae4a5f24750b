"""Copy a trained model into the package as Ember's default (fp16), with a scene head fitted as a
linear probe on its frozen visual tokens (ember_train/scene_probe.py), and record its test-split metrics.

Usage: python tools/ship_default_model.py outputs/default-model/stage3/best
(after `ember calibrate` has written the calibration into that directory: `make default-model` does both);
`python tools/ship_default_model.py --record-only` re-records the metrics of the model already shipped.
The recorded metrics (evaluation.json) are what tests/test_default_model.py checks the shipped
model against, so a change to the model or to the scoring code that moves them is noticed.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

import torch

from ember_core.pretrained import DEFAULT_MODEL_DIR, load_pretrained, save_pretrained
from ember_core.robots_file import load_fleet
from ember_train.data import load_records, split_records
from ember_train.evaluate import score_records
from ember_train.public_data import PUBLIC_DATA
from ember_train.scene_probe import fit_scene_head

EVALUATION_FILE = "evaluation.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="directory of the trained model (e.g. outputs/default-model/stage3/best)")
    parser.add_argument("--data", default=str(PUBLIC_DATA), help="public robot-selection data, for the recorded metrics "
                        "(default: $EMBER_DATA, %(default)s)")
    parser.add_argument("--record_only", "--record-only", action="store_true",
                        help="re-record the metrics of the model already shipped, after a new calibration or a "
                             "change to the scoring code (no MODEL)")
    args = parser.parse_args()
    if (args.model is None) != args.record_only:
        parser.error("give MODEL to ship it, or --record-only without MODEL")
    splits = split_records(load_records(args.data, load_fleet()), seed=0)
    if args.record_only:
        scene = json.loads((DEFAULT_MODEL_DIR / EVALUATION_FILE).read_text(encoding="utf-8"))["scene_probe_test"]
    else:
        model, processor = load_pretrained(args.model, fleet=load_fleet())
        scene = fit_scene_head(model, processor, splits.train, splits.test)
        save_pretrained(model, processor, DEFAULT_MODEL_DIR, dtype=torch.float16)
    model, processor = load_pretrained(DEFAULT_MODEL_DIR, fleet=load_fleet())
    test = splits.test
    calibration = processor.config.calibration
    recorded = {"split": "public test, seed 0", "num_tasks": len(test), "calibration": asdict(calibration),
                "scene_probe_test": scene}
    for name, use_images in (("rendered_scenes", True), ("text_only", False)):
        scores = score_records(model, processor, test, use_images=use_images)
        recorded[name] = scores.metrics(processor.fleet.names, calibration)
    (DEFAULT_MODEL_DIR / EVALUATION_FILE).write_text(json.dumps(recorded, indent=2) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    print(f"Recorded {DEFAULT_MODEL_DIR / EVALUATION_FILE}" if args.record_only
          else f"Shipped {args.model} -> {DEFAULT_MODEL_DIR} ({size / 1e6:.1f} MB)")
    print(json.dumps({k: recorded[k] for k in ("num_tasks", "calibration", "scene_probe_test")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
