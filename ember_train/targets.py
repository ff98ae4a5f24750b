"""Explanation targets: the slots of the explanation program answered by rule, for the decoder to learn.

The public data has no reasoning text, so the targets are built by rules, not written by people,
from the same program the Selector decodes (`ember_core.explanation`); only the slots are learned:

- Step 1 copies the task from its action verb (`ember_core.explanation.copy_source`) to the end of
  its first sentence, at most MAX_COPY_WORDS words;
- Step 3 names, for each of the record's suitable robots, the card phrases (capabilities, then
  roles) sharing most word stems with the task (ties: card order), and for the runner-up the
  limitation sharing most stems (ties: card order);
- the runner-up is a robot outside the record's set, drawn per task with a fixed seed, so the
  decoder sees every robot in that place.

Step 2 and Step 4 are fixed text in the program: the decoder never learns them.
"""
from __future__ import annotations

import random
import re
from typing import Sequence

from ember_core.explanation import MAX_COPY_WORDS, Choice, Copy, ExplanationContext, Slot
from ember_core.fleet import Fleet

_WORD = re.compile(r"[a-z]+")
STEM_LETTERS = 5


def target_context(task: str, robots: Sequence[str], fleet: Fleet, scene: tuple[str, ...] | None,
                   seed: int = 0) -> ExplanationContext:
    """What a training record's explanation is about: `robots` (fleet ids) are its suitable robots,
    `scene` the scene tags its image shows (None when trained without the image)."""
    others = [robot for robot in fleet.ids if robot not in robots]
    runner_up = random.Random(f"{seed}:{task}").choice(others) if others else None
    return ExplanationContext(task=task, fleet=fleet, selected=tuple(robots), scene=scene, runner_up=runner_up)


def target_choice(slot: Slot, task: str) -> str:
    """The rule's answer to one slot (see the module docstring)."""
    if isinstance(slot, Copy):
        return _action_span(slot.source)
    return _best_overlap(slot, task)


def _action_span(source: str) -> str:
    """The source (the task from its action verb) to the end of its first sentence, at most MAX_COPY_WORDS words."""
    chosen = []
    for word in source.split()[:MAX_COPY_WORDS]:
        if word[-1] in ".;!?":
            chosen.append(word.rstrip(".;!?"))
            break
        chosen.append(word)
    return " " + " ".join(piece for piece in chosen if piece).rstrip(",:")


def _best_overlap(slot: Choice, task: str) -> str:
    """The option sharing most word stems with the task (the first on a tie)."""
    task_stems = {word[:STEM_LETTERS] for word in _WORD.findall(task.lower()) if len(word) > 2}
    scored = [(len({w[:STEM_LETTERS] for w in _WORD.findall(option.lower()) if len(w) > 2} & task_stems), -i, option)
              for i, option in enumerate(slot.options)]
    return max(scored)[2]
