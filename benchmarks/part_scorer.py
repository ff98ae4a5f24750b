"""The part scorer's settings (ember_core/part_scorer.py) on the development sets: team Jaccard and false teams.

For each C and word-feature weight of a small grid this script fits the part scorer on the labelled steps
(ember_core/assets/part_clauses.jsonl; ember_train.part_scorer_fit), mixes its probabilities with the model's
calibrated part probabilities by each MIX, and explains every task of the development sets with the Selector,
text only. It prints the team Jaccard on the team jobs, the share of false teams on each single-robot set and
on all of them together, counted by `ember eval --explanations`'s own code (ember_train.explanation_eval);
mix 0 is the rule without the part scorer and reproduces `python benchmarks/team_rule.py --weights 0.5
--thresholds 0.1`. The report sets are never read here.

`python benchmarks/part_scorer.py [--model DIR] [--mix M ...] [--c C ...] [--lexical W ...]` (about 2 min a
setting on 2 cores).
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import ember_core.part_scorer as part_scorer
from ember_core.selector import Selector
from ember_train.data import load_records
from ember_train.explanation_eval import explain_records, explanation_metrics
from ember_train.part_scorer_fit import fit_part_scorer

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SETS = ("team_dev_tasks.jsonl", "two_place_dev_tasks.jsonl", "steps_dev_tasks.jsonl", "novel_dev_tasks.jsonl",
        "snake_dev_tasks.jsonl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--mix", type=float, nargs="+", default=(0.0, 0.75, 0.9), metavar="M",
                        help="MIX values: the part scorer's weight beside the model (default: %(default)s)")
    parser.add_argument("--c", type=float, nargs="+", default=(4.0,), metavar="C",
                        help="inverse L2 strength of the logistic regressions (default: %(default)s)")
    parser.add_argument("--lexical", type=float, nargs="+", default=(0.0, 2.0), metavar="W",
                        help="weight of the word features beside the embedding, 0 for none (default: %(default)s)")
    args = parser.parse_args()
    fleet_selector = Selector(args.model, device="cpu")
    snake_selector = Selector(args.model, robots_file=DATA / "robots_with_snake.yaml", device="cpu")
    sets = [(selector, load_records(DATA / name, selector.fleet)) for name in SETS
            for selector in [snake_selector if name.startswith("snake") else fleet_selector]]
    grid = list(itertools.product(args.c, args.lexical))
    scorers = {(c, weight): fit_part_scorer(fleet_selector, c=c, lexical_weight=weight) for c, weight in grid}
    print(f"{'C':>5} {'words':>5} {'mix':>5} {'team Jaccard':>12}"
          + "".join(f" {name.split('_dev')[0] + ' false':>15}" for name in SETS[1:]) + f" {'all false':>10}")
    for (c, weight), mix in itertools.product(grid, args.mix):
        part_scorer.MIX = mix
        figures, false_teams = [], 0
        for index, (selector, records) in enumerate(sets):
            selector.part_scorer = scorers[c, weight]
            metrics = explanation_metrics(explain_records(selector, records, use_images=False), records, selector.fleet)
            figures.append(metrics["false_team_rate" if index else "team_jaccard"])
            false_teams += round(figures[-1] * len(records)) if index else 0
        singles = sum(len(records) for _, records in sets[1:])
        print(f"{c:>5} {weight:>5} {mix:>5} {figures[0]:>12.3f}" + "".join(f" {figure:>15.3f}" for figure in figures[1:])
              + f" {false_teams / singles:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
