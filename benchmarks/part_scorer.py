"""The part scorer's two settings (ember_core/part_scorer.py) on the development sets: team Jaccard and false teams.

For each C of a small grid this script fits the part scorer on the labelled steps
(ember_core/assets/part_clauses.jsonl; ember_train.part_scorer_fit), mixes its probabilities with the model's
calibrated part probabilities by each MIX, and runs the team rule (`part_probabilities`, `plan_team`) on every
task of the development sets, text only. It prints the team Jaccard on the team jobs and the share of false
teams on the single-robot sets, as `ember eval --explanations` defines them; mix 0 is the rule without the
part scorer and reproduces `python benchmarks/team_rule.py --weights 0.5 --thresholds 0.1`. The report sets
are never read here.

`python benchmarks/part_scorer.py [--model DIR] [--mix M ...] [--c C ...]` (about 1 min on 2 cores).
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

import ember_core.part_scorer as part_scorer
from ember_core.clauses import task_parts
from ember_core.errors import InvalidInputError
from ember_core.selector import Selector
from ember_core.teams import part_probabilities, part_texts, plan_team
from ember_train.data import load_records
from ember_train.part_scorer_fit import fit_part_scorer

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
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
                        help="MIX values: the part scorer's weight beside the model (default: %(default)s)")
    parser.add_argument("--c", type=float, nargs="+", default=(4.0, 16.0), metavar="C",
                        help="inverse L2 strength of the logistic regressions (default: %(default)s)")
    args = parser.parse_args()
    fleet_selector = Selector(args.model, device="cpu")
    snake_selector = Selector(args.model, robots_file=DATA / "robots_with_snake.yaml", device="cpu")
    clauses = part_scorer.read_clauses()
    sets = {name: (selector, parts_scored(selector, name)) for name in SETS
            for selector in [snake_selector if name.startswith("snake") else fleet_selector]}
    print(f"{'C':>5} {'mix':>5} {'team Jaccard':>12}" + "".join(f" {name.split('_dev')[0] + ' false':>15}"
                                                             for name in SETS[1:]))
    scorers = {c: fit_part_scorer(fleet_selector, clauses, c) for c in args.c}
    for c, mix in itertools.product(args.c, args.mix):
        scorer, part_scorer.MIX = scorers[c], mix
        figures = []
        for selector, tasks in sets.values():
            values = []
            for parts, probabilities, embedding, gold in tasks:
                team = ()
                if probabilities is not None:
                    mixed = scorer.mix(probabilities, embedding, selector.fleet.ids)
                    eligible = np.ones(len(selector.fleet), dtype=bool)
                    team = plan_team(parts, part_probabilities(mixed, len(parts)), eligible, selector.fleet.ids).team
                values.append(len(set(gold) & set(team)) / len(set(gold) | set(team)) if gold else bool(team))
            figures.append(float(np.mean(values)))
        print(f"{c:>5} {mix:>5} {figures[0]:>12.3f}" + "".join(f" {figure:>15.3f}" for figure in figures[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
