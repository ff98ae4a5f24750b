"""How a robot added after training is scored: hit@1 over `new_robot_scale` and `new_robot_bias`, on development sets.

A robot without a trained MLP row gets `scale * z + bias`, z its card classifier's standardised log-odds
(`ember_core.model.heads`; read in the new-robot encoder's space where the model has one). This scores the development sets once per fleet with the shipped model, recovers z
from the new robot's logit, and recounts hit@1 for every (scale, bias) of the grid; the trained robots' logits
do not depend on the two numbers. Three six-robot fleets are scored: the README's example card (4 examples), the
same card without examples, and the shipped 40-example plugin. The sets are development sets only:

- snake_dev_tasks.jsonl: the snake is acceptable in every task (hits count for the snake);
- near_snake_dev_tasks.jsonl, novel_dev_tasks.jsonl, novel_dev2_tasks.jsonl and the public validation split: the
  snake is acceptable in none; each column shows the hits lost against the five-robot fleet (what the sixth robot
  costs the others).

`python benchmarks/new_robot.py [--scales ...] [--biases ...] [--top 10]` prints the best settings by the hits
summed over all sets and fleets, and the shipped one (about 1 min on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import numpy as np

from ember_core.model.config import EmberVLMConfig
from ember_core.pretrained import DEFAULT_MODEL_DIR, load_pretrained
from ember_core.robots_file import load_fleet
from ember_train.data import load_records, split_records
from ember_train.evaluate import score_records
from ember_train.public_data import PUBLIC_DATA

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SNAKE_SET = "snake_dev_tasks.jsonl"
OTHER_SETS = ("near_snake_dev_tasks.jsonl", "novel_dev_tasks.jsonl", "novel_dev2_tasks.jsonl", "public val")
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


def hits(logits: np.ndarray, targets: np.ndarray) -> int:
    return int(targets[np.arange(len(targets)), logits.argmax(1)].sum())


def rescored(logits: np.ndarray, shipped: tuple[float, float], scale: float, bias: float) -> np.ndarray:
    """The logits with the new robot (the last column) scored with `scale` and `bias` instead of the shipped pair."""
    z = (logits[:, -1] - shipped[1]) / shipped[0]
    result = logits.copy()
    result[:, -1] = scale * z + bias
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.4, 0.5, 0.6, 0.7, 0.8, 1.0])
    parser.add_argument("--biases", type=float, nargs="+", default=[-2.3, -2.0, -1.85, -1.7, -1.55, -1.4, -1.1])
    parser.add_argument("--top", type=int, default=10, help="how many of the best settings to print")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        fleets = write_fleets(Path(directory))
        baseline = {name: hits(*scored) for name, scored in score_sets(fleets.pop("five robots"), OTHER_SETS).items()}
        scored = {card: score_sets(path, (SNAKE_SET, *OTHER_SETS)) for card, path in fleets.items()}
    config = EmberVLMConfig.load(DEFAULT_MODEL_DIR)  # the model score_sets loads
    shipped = (config.new_robot_scale, config.new_robot_bias)
    sizes = {name: len(targets) for name, (_, targets) in scored["README card"].items()}
    print("Five-robot hits: " + ", ".join(f"{name} {baseline[name]}/{sizes[name]}" for name in OTHER_SETS))
    print(f"Per card: snake hits on {SNAKE_SET} (of {sizes[SNAKE_SET]}), then hits lost on " + ", ".join(OTHER_SETS))
    rows = []
    for scale in args.scales:
        for bias in args.biases:
            cells = {card: [hits(rescored(logits, shipped, scale, bias), targets) for logits, targets in sets.values()]
                     for card, sets in scored.items()}
            rows.append((sum(sum(row) for row in cells.values()), scale, bias, cells))
    rows.sort(key=lambda row: -row[0])
    shown = rows[:args.top] + [row for row in rows[args.top:] if row[1:3] == shipped]
    for total, scale, bias, cells in shown:
        mark = "  (shipped)" if (scale, bias) == shipped else ""
        described = "; ".join(f"{card} {row[0]}, -" + "/-".join(str(baseline[name] - hit) for name, hit in zip(OTHER_SETS, row[1:]))
                              for card, row in cells.items())
        print(f"scale {scale:.2f} bias {bias:+.2f}: {total} hits | {described}{mark}")


if __name__ == "__main__":
    main()
