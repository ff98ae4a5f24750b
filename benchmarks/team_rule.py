"""The team rule's settings (ember_core/teams.py) on the development sets: team Jaccard and false teams.

`python benchmarks/team_rule.py [--model DIR] [--weights W ...] [--thresholds T ...] [--pieces OWN,FOREIGN ...]
[--margins M ...]` explains every task of the development sets, text only, once per setting of a small grid of
CONTEXT_WEIGHT, PART_THRESHOLD, (PIECE_OWN, PIECE_FOREIGN) and CONTINUATION_MARGIN (about 2 min a setting on
2 cores), and prints the team Jaccard on the team jobs (tests/data/team_dev_tasks.jsonl) and the share of false
teams on four sets of single-robot jobs: jobs that mention two places (two_place_dev_tasks.jsonl), jobs told in
several steps (steps_dev_tasks.jsonl), novel phrasings (novel_dev_tasks.jsonl) and snake-robot jobs with the
snake in the fleet (snake_dev_tasks.jsonl, robots_with_snake.yaml), and their count over all four, counted by
`ember eval --explanations`'s own code (ember_train.explanation_eval). The report sets (team_tasks.jsonl,
two_place_tasks.jsonl, novel_tasks.jsonl, snake_tasks.jsonl) are never read here.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import ember_core.teams as teams
from ember_core.selector import Selector
from ember_train.data import load_records
from ember_train.explanation_eval import explain_records, explanation_metrics

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
WEIGHTS = (0.0, 0.3, 0.5, 0.7)
THRESHOLDS = (0.1, 0.3)
SINGLE_ROBOT_SETS = ("two_place_dev_tasks.jsonl", "steps_dev_tasks.jsonl", "novel_dev_tasks.jsonl", "snake_dev_tasks.jsonl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--weights", type=float, nargs="+", default=WEIGHTS, metavar="W",
                        help="CONTEXT_WEIGHT values of the grid (default: %(default)s)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS, metavar="T",
                        help="PART_THRESHOLD values of the grid (default: %(default)s)")
    parser.add_argument("--pieces", type=_pair, nargs="+", default=[(teams.PIECE_OWN, teams.PIECE_FOREIGN)],
                        metavar="OWN,FOREIGN",
                        help="(PIECE_OWN, PIECE_FOREIGN) pairs of the grid (default: %(default)s)")
    parser.add_argument("--margins", type=float, nargs="+", default=(teams.CONTINUATION_MARGIN,), metavar="M",
                        help="CONTINUATION_MARGIN values of the grid (default: %(default)s)")
    args = parser.parse_args()
    fleet_selector = Selector(args.model, device="cpu")
    snake_selector = Selector(args.model, robots_file=DATA / "robots_with_snake.yaml", device="cpu")
    sets = [(name, snake_selector if name.startswith("snake") else fleet_selector) for name in
            ("team_dev_tasks.jsonl", *SINGLE_ROBOT_SETS)]
    (team_selector, team_jobs), *single = [(selector, load_records(DATA / name, selector.fleet)) for name, selector in sets]

    def measured(selector: Selector, records, key: str) -> float:
        documents = explain_records(selector, records, use_images=False)
        return explanation_metrics(documents, records, selector.fleet)[key]

    names = "".join(f" {name.split('_dev')[0] + ' false':>15}" for name in SINGLE_ROBOT_SETS)
    print(f"{'context weight':>14} {'threshold':>9} {'pieces':>9} {'margin':>6} {'team Jaccard':>12}{names}"
          f" {'all false':>10}")
    for weight, threshold, (own, foreign), margin in itertools.product(args.weights, args.thresholds, args.pieces,
                                                                        args.margins):
        teams.CONTEXT_WEIGHT, teams.PART_THRESHOLD, teams.CONTINUATION_MARGIN = weight, threshold, margin
        teams.PIECE_OWN, teams.PIECE_FOREIGN = own, foreign
        figures = [measured(team_selector, team_jobs, "team_jaccard")]
        figures += [measured(selector, records, "false_team_rate") for selector, records in single]
        false_teams = sum(round(rate * len(records)) for rate, (_, records) in zip(figures[1:], single))
        print(f"{weight:>14} {threshold:>9} {f'{own},{foreign}':>9} {margin:>6}"
              + "".join(f" {figure:>{12 if i == 0 else 15}.3f}" for i, figure in enumerate(figures))
              + f" {false_teams:>4}/{sum(len(records) for _, records in single)}")
    return 0


def _pair(text: str) -> tuple[float, float]:
    own, foreign = (float(value) for value in text.split(","))
    return own, foreign


if __name__ == "__main__":
    raise SystemExit(main())
