"""The team rule's two settings (ember_core/teams.py) on the development sets: team Jaccard and false teams.

`python benchmarks/team_rule.py [--model DIR]` explains every task of tests/data/team_dev_tasks.jsonl (team
jobs) and tests/data/two_place_dev_tasks.jsonl (single-robot jobs that mention two places), text only,
once per pair of TEAM_CANDIDATES and PART_THRESHOLD of a small grid, and prints the team Jaccard on the
first and the share of false teams on the second, counted by `ember eval --explanations`'s own code
(ember_train.explanation_eval). The report sets
(team_tasks.jsonl, two_place_tasks.jsonl) are never read here.
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
CANDIDATES = (2, 3)
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    args = parser.parse_args()
    selector = Selector(args.model, device="cpu")
    team_jobs = load_records(DATA / "team_dev_tasks.jsonl", selector.fleet)
    single_jobs = load_records(DATA / "two_place_dev_tasks.jsonl", selector.fleet)

    def measured(records, key: str) -> float:
        documents = explain_records(selector, records, use_images=False)
        return explanation_metrics(documents, records, selector.fleet)[key]

    print(f"{'candidates':>10} {'threshold':>9} {'team Jaccard':>12} {'false teams':>11}")
    for candidates, threshold in itertools.product(CANDIDATES, THRESHOLDS):
        teams.TEAM_CANDIDATES, teams.PART_THRESHOLD = candidates, threshold
        jaccard, false_teams = measured(team_jobs, "team_jaccard"), measured(single_jobs, "false_team_rate")
        print(f"{candidates:>10} {threshold:>9} {jaccard:>12.3f} {false_teams:>11.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
