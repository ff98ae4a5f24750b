"""How a robot added after training is scored: hit@1 over `new_robot_scale` and `new_robot_bias`, on development sets.

A robot without a trained MLP row gets `scale * z + bias`, z its card classifier's standardised log-odds
(`ember_core.model.heads`; read in the new-robot encoder's space where the model has one). This scores the development sets once per fleet with the shipped model, recovers z
from the new robot's logit, and recounts hit@1 for every (scale, bias) of the grid; the trained robots' logits
do not depend on the two numbers. Three six-robot fleets are scored: the README's example card (4 examples), the
same card without examples, and the shipped 40-example plugin. The sets are development sets only:

- snake_dev_tasks.jsonl (`--snake_set`; snake_dev2_tasks.jsonl is a second, larger one): the snake is acceptable in
  every task (hits count for the snake);
- near_snake_dev_tasks.jsonl (`--near_set`; near_snake_dev2_tasks.jsonl is the second), novel_dev_tasks.jsonl,
  novel_dev2_tasks.jsonl and the public validation split: the snake is acceptable in none; each column shows the hits
  against the five-robot fleet's (-2: what the sixth robot costs the others; +1: a task the six-robot fleet gets
  right and the five robots do not).

Each setting is also scored on the clear tasks of a fleet of 50 (tools/generated_fleet.py's CLEAR_TASKS, 45 of
its robots scored as new robots). `python benchmarks/new_robot.py [--scales ...] [--biases ...] [--top 10]` prints
the best settings by the hits summed over all sets and fleets, the shipped one, and the rule's choice: the setting
with the most hits that loses no novel development or public validation task with any card and gets every clear
task of the fleet of 50 right (about 1 min on 2 CPU cores). Last, for each card, the most snake hits of any setting
that loses none of those tasks with that card: how far a card gets when the others may lose nothing.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from ember_core.model.config import EmberVLMConfig
from ember_core.pretrained import DEFAULT_MODEL_DIR, load_pretrained
from ember_core.robots_file import load_fleet
from ember_train.data import TaskRecord, load_records, split_records
from ember_train.evaluate import score_records
from ember_train.public_data import PUBLIC_DATA

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from generated_fleet import CLEAR_TASKS, write_fleet  # noqa: E402

DATA = ROOT / "tests" / "data"
# The sets of which the rule's choice may lose no task.
KEPT_SETS = ("novel_dev_tasks.jsonl", "novel_dev2_tasks.jsonl", "public val")
# The README card without its examples: what an integrator who writes none gets.
BARE_CARD = ("from dataclasses import replace\n\nfrom ember_core import hookimpl\nfrom snake_robot import SNAKE_ROBOT\n\n\n"
             "@hookimpl\ndef ember_robot_types():\n    return [replace(SNAKE_ROBOT, examples=[])]\n")


def write_fleets(directory: Path) -> dict[str, Path]:
    """robots.yaml files of the fleets compared, keyed by the name printed."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    card = re.search(r"<!-- example: snake_robot.py -->\n```python\n(.*?)```", readme, re.S).group(1)
    (directory / "snake_robot.py").write_text(card, encoding="utf-8")
    (directory / "snake_robot_bare.py").write_text(BARE_CARD, encoding="utf-8")
    five = (ROOT / "robots.yaml").read_text(encoding="utf-8").rstrip("\n") + "\n"
    fleets = {"five robots": ROOT / "robots.yaml", "shipped plugin": DATA / "robots_with_snake.yaml"}
    for name, module in (("README card", "snake_robot"), ("no examples", "snake_robot_bare")):
        fleets[name] = directory / f"{module}.yaml"
        fleets[name].write_text(five + f"  - plugin: {module}\n", encoding="utf-8")
    return fleets


def score_sets(robots_file: Path, sets: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per set: the shipped model's logits and the targets."""
    model, processor = load_pretrained(None, fleet=load_fleet(robots_file))
    scored = {}
    for name in sets:
        if name == "public val":
            records = split_records(load_records(PUBLIC_DATA, processor.fleet), seed=0).val
        else:
            records = load_records(DATA / name, processor.fleet)
        scores = score_records(model, processor, records, use_images=False)
        scored[name] = (scores.logits, scores.targets)
    return scored


def score_clear_tasks(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped model's logits and targets for the clear tasks of a fleet of 50, and which robots are new."""
    model, processor = load_pretrained(None, fleet=load_fleet(write_fleet(directory / "fleet_of_50", 50)))
    records = [TaskRecord(task, (robot,)) for task, robot in CLEAR_TASKS.items()]
    scores = score_records(model, processor, records, use_images=False)
    return scores.logits, scores.targets, ~model.robot_head.known.cpu().numpy()


def hits(logits: np.ndarray, targets: np.ndarray) -> int:
    return int(targets[np.arange(len(targets)), logits.argmax(1)].sum())


def loses_none(counts: list[int], baseline: dict[str, int], other_sets: tuple[str, ...]) -> bool:
    """Whether a card's hits (the snake set's, then `other_sets`') keep every task of KEPT_SETS the five robots get
    right."""
    return all(counts[1 + other_sets.index(name)] >= baseline[name] for name in KEPT_SETS)


def rescored(logits: np.ndarray, shipped: tuple[float, float], scale: float, bias: float,
             new: np.ndarray | None = None) -> np.ndarray:
    """The logits with the new robots (the columns `new`; the last one by default) scored with `scale` and `bias`
    instead of the shipped pair."""
    new = np.arange(logits.shape[1]) == logits.shape[1] - 1 if new is None else new
    result = logits.copy()
    result[:, new] = scale * (logits[:, new] - shipped[1]) / shipped[0] + bias
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.6, 0.8, 1.0, 1.2, 1.5, 2.0])
    parser.add_argument("--biases", type=float, nargs="+",
                        default=[-0.8, -1.0, -1.2, -1.4, -1.6, -1.8, -2.0, -2.2, -2.4, -2.6, -3.0, -3.4, -4.0])
    parser.add_argument("--top", type=int, default=10, help="how many of the best settings to print")
    parser.add_argument("--snake_set", default="snake_dev_tasks.jsonl", help="tests/data set of snake tasks")
    parser.add_argument("--near_set", default="near_snake_dev_tasks.jsonl", help="tests/data set of near-snake tasks")
    args = parser.parse_args()
    snake_set, other_sets = args.snake_set, (args.near_set, *KEPT_SETS)
    with tempfile.TemporaryDirectory() as directory:
        fleets = write_fleets(Path(directory))
        baseline = {name: hits(*scored) for name, scored in score_sets(fleets.pop("five robots"), other_sets).items()}
        scored = {card: score_sets(path, (snake_set, *other_sets)) for card, path in fleets.items()}
        clear_logits, clear_targets, new = score_clear_tasks(Path(directory))
    config = EmberVLMConfig.load(DEFAULT_MODEL_DIR)  # the model score_sets loads
    shipped = (config.new_robot_scale, config.new_robot_bias)
    sizes = {name: len(targets) for name, (_, targets) in scored["README card"].items()}
    print("Five-robot hits: " + ", ".join(f"{name} {baseline[name]}/{sizes[name]}" for name in other_sets))
    print(f"Per card: snake hits on {snake_set} (of {sizes[snake_set]}), then hits against the five robots on "
          + ", ".join(other_sets)
          + f"; then the fleet of 50's clear tasks right (of {len(CLEAR_TASKS)})")
    rows = []
    for scale in args.scales:
        for bias in args.biases:
            cells = {card: [hits(rescored(logits, shipped, scale, bias), targets) for logits, targets in sets.values()]
                     for card, sets in scored.items()}
            clear = hits(rescored(clear_logits, shipped, scale, bias, new), clear_targets)
            kept = clear == len(CLEAR_TASKS) and all(loses_none(counts, baseline, other_sets)
                                                     for counts in cells.values())
            rows.append((sum(sum(row) for row in cells.values()), scale, bias, cells, clear, kept))
    rows.sort(key=lambda row: -row[0])
    chosen = next((row for row in rows if row[5]), None)
    shown = rows[:args.top] + [row for row in rows[args.top:] if row[1:3] == shipped or row is chosen]
    for row in shown:
        total, scale, bias, cells, clear, _ = row
        mark = ("  (shipped)" if (scale, bias) == shipped else "") + ("  (the rule's choice)" if row is chosen else "")
        described = "; ".join(f"{card} {counts[0]}, " + "/".join(f"{hit - baseline[name]:+d}" for name, hit in zip(other_sets, counts[1:]))
                              for card, counts in cells.items())
        print(f"scale {scale:.2f} bias {bias:+.2f}: {total} hits | {described} | fleet of 50 {clear}/{len(CLEAR_TASKS)}{mark}")
    if chosen is None:
        print("No setting of the grid loses no novel development or public validation task and keeps the fleet of 50 right")
    for card in scored:
        kept = [row for row in rows if loses_none(row[3][card], baseline, other_sets)]
        best = max(kept, key=lambda row: row[3][card][0], default=None)
        print(f"{card}: " + (f"at most {best[3][card][0]} snake hits of {sizes[snake_set]} losing no novel development "
                             f"or public validation task (scale {best[1]:.2f} bias {best[2]:+.2f})" if best
                             else "every setting loses a novel development or public validation task"))


if __name__ == "__main__":
    main()
