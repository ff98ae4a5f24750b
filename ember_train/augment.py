"""Train-only text augmentation: synonym swaps and paraphrase templates that keep a task's meaning.

Only the task text changes; robots, plan and image are the original's. The caller must pass training
records only, after `split_records`: a variant of a validation or test task in the training set
would leak that task across the split.

Verbs and a few unambiguous nouns are swapped, never words that name the environment (underwater,
aerial, stairs, rooftop, ...), so `ember_core.scenes.scene_tags` of a variant equals that of its original.
"""
from __future__ import annotations

import dataclasses
import random
import re
from typing import Sequence

from ember_train.data import TaskRecord, task_key

# Verbs are swapped only where they act as verbs: at the start of the task or after "to " / "and ",
# so a noun such as "geological survey site" is never read as the verb "survey". Longer phrases are
# tried first, so "search for" is replaced as a whole and "monitor for" never becomes "observe for".
VERBS: dict[str, tuple[str, ...]] = {
    "search for": ("look for", "hunt for"),
    "search through": ("comb through",),
    "check for": ("look for", "inspect for"),
    "monitor for": ("watch for", "look out for"),
    "navigate through": ("move through",),
    "navigate across": ("move across",),
    "clean up": ("tidy up",),
    "inspect": ("examine", "check"),
    "examine": ("inspect", "check"),
    "check": ("inspect", "examine"),
    "transport": ("carry", "move"),
    "carry": ("transport",),
    "survey": ("scan", "examine"),
    "deliver": ("bring", "take"),
    "monitor": ("watch", "observe"),
    "search": ("scour",),
    "repair": ("fix",),
    "clean": ("wash",),
    "assess": ("evaluate", "judge"),
    "evaluate": ("assess",),
    "analyze": ("study", "examine"),
    "study": ("analyze",),
    "collect": ("gather",),
    "gather": ("collect",),
    "explore": ("investigate",),
    "traverse": ("cross",),
    "cross": ("traverse",),
    "travel": ("go",),
    "navigate": ("traverse",),
    "perform": ("carry out", "conduct"),
    "identify": ("find", "spot"),
    "locate": ("find",),
    "retrieve": ("recover", "fetch"),
    "capture": ("record", "take"),
}
# Words swapped anywhere: nouns and modifiers with one meaning in these tasks.
WORDS: dict[str, tuple[str, ...]] = {
    "supplies": ("provisions",),
    "equipment": ("gear",),
    "packages": ("parcels",),
    "package": ("parcel",),
    "cracks": ("fractures",),
    "signs": ("indications",),
    "rapid": ("quick",),
    "quickly": ("rapidly",),
}
_SYNONYMS = {**VERBS, **WORDS}


def _alternation(phrases: dict[str, tuple[str, ...]]) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


_PHRASE = re.compile(
    rf"(?:^|(?<=\bto )|(?<=\band ))(?:{_alternation(VERBS)})\b|\b(?:{_alternation(WORDS)})\b", re.IGNORECASE
)

# "{task}" is the whole text, "{lower}" the same with a lower-case first letter, "{bare}" without the
# final stop. None of them adds or removes a fact about the task.
TEMPLATES = (
    "{task}",
    "Please {lower}",
    "We need a robot to {lower}",
    "Send a robot to {lower}",
    "I need a robot that can {lower}",
    "Find the right robot to {lower}",
    "The job: {lower}",
    "Objective: {task}",
    "{bare}, please.",
    "Can a robot {bare_lower}?",
)
_ATTEMPTS_PER_VARIANT = 30


def augment(records: Sequence[TaskRecord], factor: int = 3, seed: int = 0) -> list[TaskRecord]:
    """Each training record followed by (factor - 1) distinct reworded variants of it.

    Deterministic for a seed; each record's variants depend only on the seed and its own text.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1 (1 means no augmentation), got {factor!r}")
    out: list[TaskRecord] = []
    for record in records:
        out.append(record)
        for n, text in enumerate(variants(record.task, factor - 1, seed), 1):
            out.append(dataclasses.replace(record, task=text, source=f"{record.source}~aug{n}"))
    return out


def variants(task: str, count: int, seed: int = 0) -> list[str]:
    """`count` rewordings of `task`, all different from it and from each other (by task_key)."""
    rng = random.Random(f"{seed}:{task_key(task)}")
    seen = {task_key(task)}
    found: list[str] = []
    for _ in range(_ATTEMPTS_PER_VARIANT * count):
        if len(found) == count:
            break
        text = _template(rng.choice(TEMPLATES), _swap_synonyms(task, rng))
        if task_key(text) not in seen:
            seen.add(task_key(text))
            found.append(text)
    if len(found) < count:
        raise ValueError(f"only {len(found)} distinct variants of {task!r} were found; lower the augmentation factor")
    return found


def _swap_synonyms(task: str, rng: random.Random) -> str:
    """Replace each table phrase with a synonym at even odds, keeping the phrase's capitalisation."""

    def swap(match: re.Match) -> str:
        if rng.random() < 0.5:
            return match[0]
        return _same_case(match[0], rng.choice(_SYNONYMS[match[0].lower()]))

    return _PHRASE.sub(swap, task)


def _same_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _template(template: str, task: str) -> str:
    bare = task.rstrip(" .!")
    return template.format(task=task, lower=_lower_first(task), bare=bare, bare_lower=_lower_first(bare))


def _lower_first(text: str) -> str:
    """Lower-case the first letter unless the first word is an acronym ("UAV", "ROV")."""
    first = text.split(" ", 1)[0]
    if len(first) > 1 and first[:2].isupper():
        return text
    return text[:1].lower() + text[1:]
