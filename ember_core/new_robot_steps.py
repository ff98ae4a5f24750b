"""Labelled job steps beside a fleet's cards in the new-robot encoder's card classifier.

In a fleet with a robot added after training, the card classifier in the new-robot encoder's space tells each robot
from the others: it gives the new robot its score and every robot the log-odds of its card score
(`ember_core.model.heads`). Fitted on the cards alone, a trained robot is its card's few dozen phrases. The part
scorer's labelled job steps (ember_core/assets/part_clauses.jsonl; 5,304 of them name one robot) say in operators'
words what each default robot does, so that classifier is also fitted on them, each as a phrase of its robot (a
robot's card phrases and steps weigh one unit together, `ember_core.card_classifier`), with the L2 penalty
STEP_CLASSIFIER_L2. Both were chosen on the development sets (README, "The model"). A fleet without the default
robots is fitted on its cards alone.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import numpy as np

from ember_core.card_cache import card_embeddings
from ember_core.card_classifier import fit_card_classifier
from ember_core.part_scorer import PART_CLAUSES_FILE, read_clauses

STEP_CLASSIFIER_L2 = 1e-4


@lru_cache(maxsize=1)
def labelled_steps() -> tuple[tuple[str, str], ...]:
    """(text, robot id) of every step of the part scorer's labelled steps that names a single robot."""
    return tuple((step["clause"], step["robots"][0]) for step in read_clauses(PART_CLAUSES_FILE)
                 if len(step["robots"]) == 1)


def fleet_steps(fleet_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The `labelled_steps` whose robot is in the fleet (their indexes) and that robot's index in `fleet_ids`."""
    fleet_ids = list(fleet_ids)
    rows = [row for row, (_, robot) in enumerate(labelled_steps()) if robot in fleet_ids]
    return (np.array(rows, dtype=np.int64),
            np.array([fleet_ids.index(labelled_steps()[row][1]) for row in rows], dtype=np.int64))


def labelled_step_embeddings(encoder: Mapping[str, str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """`embed`'s embeddings of the `labelled_steps()` texts, whatever the fleet: kept between runs in the card cache
    (ember_core.card_cache) under `encoder`, what identifies the encoder `embed` runs (about 10 s on 2 CPU cores to
    compute)."""
    texts = [text for text, _ in labelled_steps()]
    steps = np.frombuffer(hashlib.sha256("\n".join(texts).encode()).digest(), dtype=np.uint8)
    return card_embeddings(encoder, {"steps": steps}, lambda: {"steps": embed(texts)})["steps"]


def fit_new_robot_classifier(card_embeddings: np.ndarray, card_owner: np.ndarray, num_robots: int,
                             step_embeddings: np.ndarray, step_owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The new-robot encoder's card classifier (weight, bias) of the card phrases' and the fleet's steps' embeddings
    (`fleet_steps`), all by that encoder."""
    return fit_card_classifier(np.concatenate([card_embeddings, step_embeddings]), np.concatenate([card_owner, step_owner]),
                               num_robots, l2=STEP_CLASSIFIER_L2)
