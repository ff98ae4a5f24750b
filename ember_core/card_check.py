"""`ember robots check`: how well a robot's card tells it apart from the rest of the fleet, before deployment.

For a robot of a fleet and a model (the shipped one unless given):

- leave-one-out: each example request on the card is selected, text only, against the fleet whose
  card for this robot lacks that example; the robot's rank is recorded and, when it is not first,
  the robot that was;
- overlap: each phrase of the card (capabilities, environments, roles) whose nearest phrase on another
  robot's card has a cosine of OVERLAP_COSINE or more in the model's sentence space (a model
  without a sentence encoder: the same words);
- a verdict from the share of examples that rank the robot first: DISTINGUISHABLE_SHARE or more is
  distinguishable, PARTLY_SHARE or more partly, less not distinguishable.

A card without examples has nothing to leave out; the check says so and only reports overlaps.
"""
from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from ember_core.fleet import Fleet
from ember_core.pretrained import load_pretrained
from ember_core.processor import EmberProcessor
from ember_core.relevance import PhraseRelevance
from ember_core.request import SelectionRequest
from ember_core.selector import Selector

OVERLAP_COSINE = 0.8
DISTINGUISHABLE_SHARE = 0.8
PARTLY_SHARE = 0.5


@dataclass
class ExampleCheck:
    """One left-out example: the robot's rank for it and the robot ranked first."""

    example: str
    rank: int
    first: str


@dataclass
class Overlap:
    """A phrase of the card close to a phrase of another robot's card."""

    phrase: str
    other_robot: str
    other_phrase: str
    cosine: float


@dataclass
class CardCheck:
    robot_id: str
    examples: list[ExampleCheck] = field(default_factory=list)
    overlaps: list[Overlap] = field(default_factory=list)

    @property
    def first_share(self) -> float | None:
        return sum(e.rank == 1 for e in self.examples) / len(self.examples) if self.examples else None

    @property
    def verdict(self) -> str:
        share = self.first_share
        if share is None:
            return (f"{self.robot_id}: no examples on the card to check it with; add a few requests this robot is the "
                    f"one for (README, 'The fleet')")
        missed = Counter(e.first for e in self.examples if e.rank != 1)
        lost = ", ".join(f"{robot} ({count})" for robot, count in missed.most_common())
        ranked = f"{sum(e.rank == 1 for e in self.examples)} of {len(self.examples)} examples rank it first"
        if share >= DISTINGUISHABLE_SHARE:
            return f"{self.robot_id}: distinguishable: {ranked}" + (f"; the rest go to {lost}" if lost else "")
        quality = "partly distinguishable" if share >= PARTLY_SHARE else "not distinguishable"
        return (f"{self.robot_id}: {quality}: {ranked}; the rest go to {lost}. Add examples in the words its users "
                f"would use, and phrases that set it apart from those robots")

    def to_dict(self) -> dict[str, Any]:
        return {"robot_id": self.robot_id, "first_share": self.first_share, "verdict": self.verdict,
                "examples": [dataclasses.asdict(e) for e in self.examples],
                "overlaps": [dataclasses.asdict(o) for o in self.overlaps]}


def check_cards(fleet: Fleet, robot_ids: list[str], model: str | os.PathLike | None = None,
                device: str = "auto") -> list[CardCheck]:
    """The check of each robot of `robot_ids` in `fleet`, with one model loaded once."""
    vlm, processor = load_pretrained(model, fleet)
    return [CardCheck(robot_id, _leave_one_out(vlm, processor, fleet, robot_id, device),
                      _overlaps(vlm, processor, fleet, robot_id)) for robot_id in robot_ids]


def _leave_one_out(vlm: Any, processor: EmberProcessor, fleet: Fleet, robot_id: str, device: str) -> list[ExampleCheck]:
    robot = fleet.robot(robot_id)
    checks = []
    for example in robot.examples:
        kept = tuple(text for text in robot.examples if text != example)
        reduced = Fleet([dataclasses.replace(r, examples=kept) if r.id == robot_id else r for r in fleet.robots])
        reduced_processor = EmberProcessor(processor.config, processor.tokenizer, reduced, processor.task_tokenizer)
        vlm.set_cards(reduced_processor.card_inputs())
        selector = Selector((vlm, reduced_processor), fleet=reduced, device=device)
        request = SelectionRequest(example, top_k=len(fleet), return_reasoning=False)
        ranked = [c.robot_id for c in selector.select(request).candidates]
        checks.append(ExampleCheck(example, ranked.index(robot_id) + 1, ranked[0]))
    vlm.set_cards(processor.card_inputs())
    return checks


def _overlaps(vlm: Any, processor: EmberProcessor, fleet: Fleet, robot_id: str) -> list[Overlap]:
    def phrases(robot) -> list[str]:
        return list(dict.fromkeys((*robot.capabilities, *robot.environments, *robot.roles)))

    embedder = PhraseRelevance(vlm, processor)
    own = phrases(fleet.robot(robot_id))
    others = [(other.id, phrase) for other in fleet.robots if other.id != robot_id for phrase in phrases(other)]
    mine, theirs = embedder.embed(own), embedder.embed([phrase for _, phrase in others])
    if mine is None or theirs is None:  # no sentence encoder: the same words only
        cosines = torch.tensor([[float(a.lower() == b.lower()) for _, b in others] for a in own])
    else:
        cosines = mine @ theirs.T
    found = []
    for row, phrase in enumerate(own):
        best = int(cosines[row].argmax())
        if float(cosines[row, best]) >= OVERLAP_COSINE:
            found.append(Overlap(phrase, others[best][0], others[best][1], round(float(cosines[row, best]), 3)))
    return found
