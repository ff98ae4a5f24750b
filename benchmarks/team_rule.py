"""The team rule's two settings (ember_core/teams.py) on the development sets: team Jaccard and false teams.

`python benchmarks/team_rule.py [--model DIR]` selects every task of tests/data/team_dev_tasks.jsonl (team
jobs) and tests/data/two_place_dev_tasks.jsonl (single-robot jobs that mention two places) text only, once
per pair of TEAM_CANDIDATES and PART_THRESHOLD of a small grid, and prints the team Jaccard on the first
and the share of false teams on the second, as `ember eval --explanations` counts them. The report sets
(team_tasks.jsonl, two_place_tasks.jsonl) are never read here.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import ember_core.teams as teams
from ember_core.request import SelectionRequest
from ember_core.selector import Selector

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
CANDIDATES = (2, 3)
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3)


def records(name: str) -> list[dict]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    args = parser.parse_args()
    selector = Selector(args.model, device="cpu")
    ids = {robot.name: robot.id for robot in selector.fleet.robots}
    team_jobs, single_jobs = records("team_dev_tasks.jsonl"), records("two_place_dev_tasks.jsonl")

    def team(task: str) -> set[str]:
        return set(selector.select(SelectionRequest(task, return_reasoning=False)).to_document()["team"])

    print(f"{'candidates':>10} {'threshold':>9} {'team Jaccard':>12} {'false teams':>11}")
    for candidates, threshold in itertools.product(CANDIDATES, THRESHOLDS):
        teams.TEAM_CANDIDATES, teams.PART_THRESHOLD = candidates, threshold
        jaccard = []
        for record in team_jobs:
            gold, found = {ids[name] for name in record["team"]}, team(record["task"])
            jaccard.append(len(gold & found) / len(gold | found))
        false_teams = sum(bool(team(record["task"])) for record in single_jobs) / len(single_jobs)
        print(f"{candidates:>10} {threshold:>9} {sum(jaccard) / len(jaccard):>12.3f} {false_teams:>11.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
