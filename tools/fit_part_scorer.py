"""Fit the part scorer and the task scorer (ember_core.part_scorer) and write them into ember_core/assets/.

`python tools/fit_part_scorer.py [--model DIR]`: embeds every step of ember_core/assets/part_clauses.jsonl with
the model's sentence encoder (the shipped model's by default), counts its words and word pairs, and fits one L2
logistic regression per robot of the default fleet on both (ember_train.part_scorer_fit): part_scorer.json. The
task scorer, task_scorer.json, is the same fit on the steps and the jobs beyond the fleet of
ember_core/assets/beyond_fleet_jobs.jsonl. About 1 min on 2 cores.
"""
from __future__ import annotations

import argparse
import json

from ember_core.atomic import write_text_atomic
from ember_core.part_scorer import PART_SCORER_FILE, PART_SOURCES, TASK_SCORER_FILE, TASK_SOURCES
from ember_core.selector import Selector
from ember_train.part_scorer_fit import fit_part_scorer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    args = parser.parse_args()
    selector = Selector(args.model, device="cpu")
    for path, sources in ((PART_SCORER_FILE, PART_SOURCES), (TASK_SCORER_FILE, TASK_SOURCES)):
        scorer = fit_part_scorer(selector, sources)
        write_text_atomic(path, json.dumps(scorer.to_record()) + "\n")
        print(f"wrote {path} (fitted on {', '.join(source.name for source in sources)}; {len(scorer.robots)} robots, "
              f"encoder {scorer.encoder})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
