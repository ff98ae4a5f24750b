"""Teams: robots needed together, as opposed to robots that could each do the job.

The Selector scores the whole task and every part of a multi-part task (`ember_core.clauses.task_parts`)
with the same model, text only (in the task's batch unless reasoning is asked): each part alone and, after
the first, also followed by the part before it in parentheses (`part_texts`), so an elliptical part is read
with what it refers to ("fetch the empty one" after "tow the luggage train to stand 14"). A part's
probabilities are CONTEXT_WEIGHT of the part in context plus the rest of the part alone
(`part_probabilities`). The rule:

1. a part is a job when a free, feasible robot reaches PART_THRESHOLD on it, unless it goes back
   (`ember_core.clauses.is_return`: "come back down", "bring the empty ones back"; whoever went
   there comes back); a part that continues the step before (`ember_core.clauses.is_continuation`:
   "do the same at the sand pit", "then cages 4 and 5") is a job only when its best robot leads the
   robot of that step by CONTINUATION_MARGIN; other parts go with the job before them (or after, for
   a first part);
2. each job goes to its most probable free, feasible robot; consecutive parts of one robot merge into one
   subtask; if that leaves two or more robots, they are the team, in the order of their first subtask,
   and the subtasks are the plan (orders 1..n, each after the one before). Otherwise one robot suffices
   and there is no team.

A part told as a comma list ("lift the drums off the canal bed, wheel them along the towpath to the depot")
is scored whole and piece by piece (`ember_core.clauses.comma_pieces`); it stays whole unless a piece is
clearly another robot's work (`expand_pieces`), since one robot's steps are often told that way too ("take
off, film the quarry face, then land by the gate").

CONTEXT_WEIGHT, PART_THRESHOLD, PIECE_OWN, PIECE_FOREIGN and CONTINUATION_MARGIN were chosen on the
development sets tests/data/team_dev_tasks.jsonl, two_place_dev_tasks.jsonl and steps_dev_tasks.jsonl (see
README, "Teams and plans"; `benchmarks/team_rule.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ember_core.clauses import is_continuation, is_return

CONTEXT_WEIGHT = 0.5
PART_THRESHOLD = 0.1
# A part told as a comma list is split into its pieces only when a piece's own best robot reaches PIECE_OWN and
# the part's best robot at most PIECE_FOREIGN on it.
PIECE_OWN = 0.6
PIECE_FOREIGN = 0.4
# A continuation ("do the same at the sand pit", "and after that up the rocky trail") is another robot's job only
# when that robot leads the robot of the step before by CONTINUATION_MARGIN on it.
CONTINUATION_MARGIN = 0.2


@dataclass(frozen=True)
class TeamPlan:
    """The team (robot ids in plan order, empty when one robot suffices) and its subtasks (description, robot id)."""

    team: tuple[str, ...] = ()
    steps: tuple[tuple[str, str], ...] = ()


def part_texts(parts: Sequence[str]) -> list[str]:
    """The texts scored for a task's parts: each part alone, then each part after the first followed by the
    part before it in parentheses."""
    return list(parts) + [f"{part} ({before})" for before, part in zip(parts, parts[1:])]


def text_count(count: int) -> int:
    """How many `part_texts` `count` parts have (each alone, and each after the first also in context)."""
    return 2 * count - 1


def part_probabilities(scored: np.ndarray, count: int) -> np.ndarray:
    """The (count, N) probabilities of `count` parts from the (text_count(count), N) ones of their `part_texts`."""
    alone, in_context = scored[:count], scored[count:]
    return np.concatenate([alone[:1], (1 - CONTEXT_WEIGHT) * alone[1:] + CONTEXT_WEIGHT * in_context])


def expand_pieces(parts: Sequence[str], probabilities: np.ndarray, pieces: Sequence[Sequence[str]],
                  piece_probabilities: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The parts, with a part replaced by its comma pieces (`ember_core.clauses.comma_pieces`) when one of them
    is another robot's work (PIECE_OWN, PIECE_FOREIGN), and their (P', N) probabilities. `pieces` holds each
    part's pieces ([part] for a part without), `piece_probabilities` the rows of the `part_texts` of the pieces
    of each part with several, in order (a piece is read in context, as a part is: `part_probabilities`)."""
    expanded, rows, offset = [], [], 0
    for part, row, split in zip(parts, probabilities, pieces):
        if len(split) > 1:
            scored = part_probabilities(piece_probabilities[offset:offset + text_count(len(split))], len(split))
            offset += text_count(len(split))
            top = int(row.argmax())
            if any(int(piece.argmax()) != top and piece.max() >= PIECE_OWN and piece[top] <= PIECE_FOREIGN
                   for piece in scored):
                expanded += split
                rows += list(scored)
                continue
        expanded.append(part)
        rows.append(row)
    return expanded, np.array(rows).reshape(len(rows), probabilities.shape[1])


def plan_team(parts: Sequence[str], probabilities: np.ndarray, eligible: np.ndarray, ids: Sequence[str]) -> TeamPlan:
    """The team for a task's parts (in time order) from their (P, N) probabilities (`part_probabilities`);
    `eligible` (N,) bool marks the free, feasible robots."""
    if len(parts) < 2 or not eligible.any():
        return TeamPlan()
    masked = np.where(eligible[None], probabilities, -1.0)
    steps: list[list] = []
    for index, (part, row) in enumerate(zip(parts, masked)):
        job = row.max() >= PART_THRESHOLD and not (index and is_return(part))
        if job and index and is_continuation(part):
            before = steps[-1][1]
            job = before is not None and row.max() - row[ids.index(before)] >= CONTINUATION_MARGIN
        robot = ids[int(row.argmax())] if job else None
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
