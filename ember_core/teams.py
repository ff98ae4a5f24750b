"""Teams: robots needed together, as opposed to robots that could each do the job.

The Selector scores the whole task and every part of a multi-part task (`ember_core.clauses.task_parts`)
with the same model, each part on its own. The rule:

1. the team can only hold the TEAM_CANDIDATES free, feasible robots the whole task ranks highest;
2. a part is a job when one of them reaches PART_THRESHOLD on it; other parts ("the south field")
   go with the job before them (or after, for a first part);
3. each job goes to the most probable of them; consecutive parts of one robot merge into one
   subtask; if that leaves two or more robots, they are the team, in the order of their first
   subtask, and the subtasks are the plan (orders 1..n, each after the one before). Otherwise one
   robot suffices and there is no team.

TEAM_CANDIDATES and PART_THRESHOLD were chosen on the development sets
tests/data/team_dev_tasks.jsonl and tests/data/two_place_dev_tasks.jsonl (see README, "Teams and plans").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

TEAM_CANDIDATES = 2
PART_THRESHOLD = 0.1


@dataclass(frozen=True)
class TeamPlan:
    """The team (robot ids in plan order, empty when one robot suffices) and its subtasks (description, robot id)."""

    team: tuple[str, ...] = ()
    steps: tuple[tuple[str, str], ...] = ()


def plan_team(parts: Sequence[str], part_probabilities: np.ndarray, probabilities: np.ndarray, eligible: np.ndarray,
              ids: Sequence[str]) -> TeamPlan:
    """The team for a task's parts (in time order) from their (P, N) probabilities and the whole task's (N,);
    `eligible` (N,) bool marks the free, feasible robots."""
    if len(parts) < 2 or not eligible.any():
        return TeamPlan()
    ranked = [i for i in np.argsort(-np.where(eligible, probabilities, -1.0), kind="stable") if eligible[i]]
    allowed = np.zeros(len(ids), dtype=bool)
    allowed[ranked[:TEAM_CANDIDATES]] = True
    masked = np.where(allowed[None], part_probabilities, -1.0)
    steps: list[list] = []
    for part, row in zip(parts, masked):
        robot = ids[int(row.argmax())] if row.max() >= PART_THRESHOLD else None
        if steps and robot in (None, steps[-1][1]):
            steps[-1][0].append(part)
        elif steps and steps[-1][1] is None:  # parts before the first job go with it
            steps[-1] = [steps[-1][0] + [part], robot]
        else:
            steps.append([[part], robot])
    team = tuple(dict.fromkeys(robot for _, robot in steps if robot is not None))
    if len(team) < 2:
        return TeamPlan()
    return TeamPlan(team, tuple((", then ".join(texts), robot) for texts, robot in steps))
