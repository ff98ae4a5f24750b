"""Fit the part scorer (ember_core.part_scorer) on the labelled steps and write ember_core/assets/part_scorer.json.

`python tools/fit_part_scorer.py [--model DIR]`: embeds every step of ember_core/assets/part_clauses.jsonl with
the model's sentence encoder (the shipped model's by default), counts its words and word pairs, and fits one L2
logistic regression per robot of the default fleet on both (ember_train.part_scorer_fit). About 20 s on 2 cores.
"""
from __future__ import annotations

import argparse
import json

from ember_core.atomic import write_text_atomic
from ember_core.part_scorer import PART_SCORER_FILE, read_clauses
from ember_core.selector import Selector
from ember_train.part_scorer_fit import fit_part_scorer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    args = parser.parse_args()
    scorer = fit_part_scorer(Selector(args.model, device="cpu"), read_clauses())
    write_text_atomic(PART_SCORER_FILE, json.dumps(scorer.to_record()) + "\n")
    print(f"wrote {PART_SCORER_FILE} ({len(scorer.robots)} robots, encoder {scorer.encoder})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
