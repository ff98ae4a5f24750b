"""Reasoning targets: the four steps the model learns to write, GENERATED from the task and the cards.

The public data has no reasoning text, so the training targets are built by rules, not written by
people: Step 1 names the task's action verbs, Step 2 its environment (the scene tags of the task
text), Step 3 the capabilities and environments of each suitable robot's card that match the task,
Step 4 selects exactly the record's suitable robots. A model trained on them learns this layout and
to ground its words in the cards; it does not learn human-quality explanations. Plans come from
the data only (see ember_train/data.py for which plans are kept); a record without one gets an
empty plan.
"""
from __future__ import annotations

import re
from typing import Sequence

from ember_core.fleet import Fleet
from ember_core.reasoning import Subtask, format_plan, format_reasoning, join_names
from ember_core.scenes import SCENE_WORDS, scene_tags

ACTION_VERBS = (
    "inspect", "examine", "check", "survey", "scan", "map", "explore", "monitor", "watch", "patrol",
    "search", "rescue", "locate", "find", "detect", "measure", "sample", "collect", "film", "photograph",
    "transport", "carry", "move", "deliver", "bring", "fetch", "retrieve", "lift", "load", "unload",
    "sort", "stack", "pick", "place", "assemble", "install", "repair", "fix", "maintain", "clean",
    "wash", "paint", "weld", "open", "close", "operate", "assist", "help", "guide", "greet", "serve",
    "cook", "navigate", "climb", "cross", "enter", "reach", "spray", "water", "plant", "harvest",
    "feed", "deploy", "tow", "clear", "dig", "secure", "test", "record", "track", "escort",
)
_WORD = re.compile(r"[a-z]+")


def reasoning_target(task: str, robots: Sequence[str], fleet: Fleet) -> str:
    """The generated 4-step reasoning for a task whose suitable robots are `robots` (fleet ids)."""
    words = _WORD.findall(task.lower())
    verbs = [verb for verb in ACTION_VERBS if verb in words]
    analysis = f"the task is to {join_names(verbs)}." if verbs else f"the task is: {_shorten(task)}."
    tags = [SCENE_WORDS[tag] for tag in SCENE_WORDS if tag in scene_tags(task)]
    environment = f"the work happens {join_names(tags)}." if tags else "the environment is not specified."
    matches = [f"{fleet.robot(robot).name} offers {join_names(_matching_facts(task, robot, fleet))}" for robot in robots]
    matching = "; ".join(matches) + "."
    return format_reasoning(analysis, environment, matching, list(robots), fleet)


def plan_target(plan: Sequence[Subtask], fleet: Fleet) -> str:
    """The plan text for a record, or "" when the data has no plan for it."""
    return format_plan(plan, fleet) if plan else ""


def _matching_facts(task: str, robot_id: str, fleet: Fleet, most: int = 2) -> list[str]:
    """The card phrases (capabilities, then environments) sharing most word stems with the task."""
    robot = fleet.robot(robot_id)
    task_stems = {word[:5] for word in _WORD.findall(task.lower()) if len(word) > 2}
    task_stems |= {word[:5] for tag in scene_tags(task) for word in _WORD.findall(tag)}
    phrases = list(robot.capabilities) + list(robot.environments)
    scored = [(len({w[:5] for w in _WORD.findall(p.lower())} & task_stems), -i, p) for i, p in enumerate(phrases)]
    best = [phrase for score, _, phrase in sorted(scored, reverse=True) if score > 0][:most]
    return best or list(robot.capabilities[:most])


def _shorten(task: str, words: int = 8) -> str:
    parts = task.rstrip(".").split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")
