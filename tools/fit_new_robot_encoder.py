"""Tune the new-robot encoder (ember_core.model.new_robot_encoder) and write it into ember_core/assets/.

`python tools/fit_new_robot_encoder.py`: tunes the top layers of all-MiniLM-L6-v2 on the labelled steps of
ember_core/assets/part_clauses.jsonl against the cards of the default fleet (robots.yaml), and on those of
the other robot kinds (robot_kind_cards.jsonl, robot_kind_steps.jsonl) against theirs, with the settings
chosen on the development sets (ember_train.new_robot_encoder), and writes the tuned layers in fp16 with
what they were fitted on (the files' digest and the settings) as the file's metadata. About 9 min on 2 cores.
"""
from __future__ import annotations

import argparse
import json

from ember_core.atomic import write_bytes_atomic
from ember_core.model.config import SHIPPED_NEW_ROBOT_ENCODER
from ember_core.model.new_robot_encoder import new_robot_encoder_file
from ember_core.model.text_encoder import minilm
from ember_core.part_scorer import PART_SOURCES, read_sources, sources_digest
from ember_core.paths import share_dir
from ember_core.robots_file import load_fleet
from ember_train.new_robot_encoder import NEW_ROBOT_SOURCES, SHIPPED_SETTINGS, read_robot_kinds, tune_new_robot_encoder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(new_robot_encoder_file(SHIPPED_NEW_ROBOT_ENCODER)), help="file to write")
    args = parser.parse_args()
    encoder = minilm()
    steps = read_sources(PART_SOURCES)
    kinds = read_robot_kinds()
    model = tune_new_robot_encoder(encoder, load_fleet(share_dir() / "robots.yaml"), steps, kinds=kinds,
                                   **SHIPPED_SETTINGS)
    metadata = {"sources": json.dumps([path.name for path in NEW_ROBOT_SOURCES]),
                "digest": sources_digest(NEW_ROBOT_SOURCES),
                "settings": json.dumps(SHIPPED_SETTINGS, sort_keys=True)}
    write_bytes_atomic(args.out, model.to_bytes(metadata))
    print(f"wrote {args.out} (top {SHIPPED_SETTINGS['layers']} layers, tuned on {len(steps)} steps of the fleet and "
          f"{len(kinds[1])} of {len(kinds[0])} other robots)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
