"""A candidate part scorer for teams, measured on the development sets: clause-level labels beside the model.

The team rule (ember_core/teams.py) is limited by how the model scores a task's parts: trained on whole
tasks, it reads "get an aerial view of the berths" as work for the Underwater Robot. This script fits a
one-vs-rest logistic regression per robot on the sentence embeddings (the model's own encoder) of the
hand-labelled clauses in benchmarks/data/part_clauses.jsonl, mixes its probabilities with the model's
calibrated part probabilities (`mix` of the clause scorer; robots without clauses keep the model's), and
runs the shipped rule (`part_probabilities`, `plan_team`) on every task of the development sets, text only.
It prints, per setting, the team Jaccard on the team jobs and the share of false teams on the single-robot
sets, as `ember eval --explanations` defines them; mix 0 is the shipped rule and reproduces
`python benchmarks/team_rule.py --weights 0.5 --thresholds 0.1`. The report sets are never read here.

`python benchmarks/clause_scorer.py [--model DIR] [--mix M ...] [--c C ...]` (about 1 min on 2 cores).
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from ember_core.clauses import task_parts
from ember_core.errors import InvalidInputError
from ember_core.selector import Selector
from ember_core.teams import part_probabilities, part_texts, plan_team
from ember_train.data import load_records

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent / "tests" / "data"
CLAUSES = ROOT / "data" / "part_clauses.jsonl"
SETS = ("team_dev_tasks.jsonl", "two_place_dev_tasks.jsonl", "steps_dev_tasks.jsonl", "novel_dev_tasks.jsonl",
        "snake_dev_tasks.jsonl")


def scored(selector: Selector, texts: list[str], fallbacks: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities (T, N) and unit sentence embeddings (T, D) of texts, text only; a text longer
    than the model reads is replaced by its fallback, as the Selector does for a part in context."""
    features = []
    for text, fallback in zip(texts, fallbacks):
        try:
            features.append(selector.processor.features(text, return_tensors="np"))
        except InvalidInputError:
            features.append(selector.processor.features(fallback, return_tensors="np"))
    outputs = selector.backend.forward(selector.processor.collate(features, return_tensors="np"), False)
    embedding = outputs.task_embedding / np.linalg.norm(outputs.task_embedding, axis=1, keepdims=True)
    return selector.processor.probabilities(outputs.robot_logits), embedding


def parts_scored(selector: Selector, name: str) -> list[tuple[list[str], np.ndarray, np.ndarray, list[str]]]:
    """Per task of a development set: its parts, the probabilities and embeddings of their part_texts, its team."""
    tasks = []
    for record in load_records(DATA / name, selector.fleet):
        parts = task_parts(selector.processor.clean_task(record.task))
        probabilities, embedding = (scored(selector, part_texts(parts), parts + parts[1:]) if len(parts) > 1
                                    else (None, None))
        tasks.append((parts, probabilities, embedding, list(record.team or ())))
    return tasks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--mix", type=float, nargs="+", default=(0.0, 0.5, 0.75, 1.0), metavar="M",
                        help="weight of the clause scorer beside the model (default: %(default)s)")
    parser.add_argument("--c", type=float, nargs="+", default=(4.0, 16.0), metavar="C",
                        help="inverse L2 strength of the logistic regressions (default: %(default)s)")
    args = parser.parse_args()
    fleet_selector = Selector(args.model, device="cpu")
    snake_selector = Selector(args.model, robots_file=DATA / "robots_with_snake.yaml", device="cpu")
    clauses = [json.loads(line) for line in CLAUSES.read_text().splitlines() if line and not line.startswith("#")]
    _, clause_embedding = scored(fleet_selector, [c["clause"] for c in clauses], [c["clause"] for c in clauses])
    sets = {name: (selector, parts_scored(selector, name)) for name in SETS
            for selector in [snake_selector if name.startswith("snake") else fleet_selector]}
    print(f"{'C':>5} {'mix':>5} {'team Jaccard':>12}" + "".join(f" {name.split('_dev')[0] + ' false':>15}"
                                                             for name in SETS[1:]))
    for c, mix in itertools.product(args.c, args.mix):
        ids = fleet_selector.fleet.ids
        labels = np.array([[robot in clause["robots"] for robot in ids] for clause in clauses])
        models = {robot: LogisticRegression(C=c, max_iter=2000).fit(clause_embedding, labels[:, j])
                  for j, robot in enumerate(ids)}
        figures = []
        for selector, tasks in sets.values():
            values = []
            for parts, probabilities, embedding, gold in tasks:
                team = ()
                if probabilities is not None:
                    mixed = probabilities.copy()
                    for j, robot in enumerate(selector.fleet.ids):
                        if robot in models:
                            mixed[:, j] = (1 - mix) * mixed[:, j] + mix * models[robot].predict_proba(embedding)[:, 1]
                    eligible = np.ones(len(selector.fleet), dtype=bool)
                    team = plan_team(parts, part_probabilities(mixed, len(parts)), eligible, selector.fleet.ids).team
                values.append(len(set(gold) & set(team)) / len(set(gold) | set(team)) if gold else bool(team))
            figures.append(float(np.mean(values)))
        print(f"{c:>5} {mix:>5} {figures[0]:>12.3f}" + "".join(f" {figure:>15.3f}" for figure in figures[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
