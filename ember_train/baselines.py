"""Reference systems the model is compared with: (n, N) robot probabilities for records, in fleet order.

Each baseline sees only the task text (never an image) and, when it learns at all, only training
records: the caller passes the same train split the model was trained on. Two baselines output a
softmax over robots (keyword rules, zero-shot embedding), so their probabilities sum to 1 per task
and the 0.5 threshold rarely selects a second robot; that is part of what they are, not a bug.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from ember_core.fleet import Fleet
from ember_core.model.text_encoder import TextEncoder, minilm
from ember_core.prompt import card_text
from ember_core.scenes import scene_tags
from ember_train.data import TaskRecord, robot_targets

STEM_LETTERS = 5
# Words every card or task shares in a robot fleet ("robot" is in three of the five names); matching
# on them would reward a robot for its name's grammar, not its abilities.
STOP_WORDS = frozenset({"and", "the", "for", "with", "from", "into", "onto", "that", "this", "are", "robot", "robots"})
# Scene tag (ember_core.scenes.SCENE_TAGS) -> card phrases that mean the robot works in that scene.
# A phrase counts when it occurs inside one of the robot's environments or capabilities.
SCENE_PHRASES: dict[str, tuple[str, ...]] = {
    "underwater": ("underwater", "marine", "ocean", "pools"),
    "aerial": ("aerial", "hard to reach"),
    "indoor": ("indoor", "warehouse", "human environments"),
    "outdoor": ("outdoor", "roads"),
    "rough_terrain": ("rough terrain", "uneven terrain", "complex terrain", "stairs"),
}
# Softmax temperature of the zero-shot baseline. all-MiniLM-L6-v2 cosines of a task to the five
# cards span ~0.2 on the public test split, the best card leading the second by ~0.08 on average, so
# at T=1 the softmax would be near uniform (top-1 ~0.23). 0.05, the scale 20 of the contrastive loss
# the encoder was trained with, turns that 0.08 lead into ~5x the odds: confidences spread like the
# other systems' and ECE is meaningful. It was chosen before looking at any metric, not tuned.
ZERO_SHOT_TEMPERATURE = 0.05
_WORD = re.compile(r"[a-z]+")


def _check_records(records: Sequence[TaskRecord], what: str) -> None:
    if not records:
        raise ValueError(f"the {what} records are empty; a baseline needs at least one task")


def _softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(scores, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def majority_set(train: Sequence[TaskRecord], test: Sequence[TaskRecord], fleet: Fleet) -> np.ndarray:
    """Every test task gets the training split's most frequent gold set: probability 1 for its robots, 0 else.

    Ties between equally frequent sets go to the first in sorted order of their fleet indices, so
    the answer does not depend on the order of the training records.
    """
    _check_records(train, "training")
    counts = Counter(tuple(sorted(fleet.index(robot) for robot in record.robots)) for record in train)
    top = max(counts.values())
    best = min(robots for robots, count in counts.items() if count == top)
    probs = np.zeros((len(test), fleet.num_robots), dtype=np.float64)
    probs[:, list(best)] = 1.0
    return probs


def stems(text: str) -> set[str]:
    """The word stems of a text: first 5 letters of each lower-case word longer than 2 letters, stop words left out."""
    return {word[:STEM_LETTERS] for word in _WORD.findall(text.lower()) if len(word) > 2 and word not in STOP_WORDS}


def keyword_scores(task: str, fleet: Fleet) -> np.ndarray:
    """(N,) rule scores of one task: shared stems with each card, plus 1 per scene tag the card's phrases cover.

    A robot's stems come from its capabilities, environments and name. Each scene tag `scene_tags`
    finds in the task adds 1 to every robot whose environments or capabilities contain one of that
    tag's `SCENE_PHRASES`.
    """
    task_stems = stems(task)
    tags = scene_tags(task)
    scores = np.zeros(fleet.num_robots, dtype=np.float64)
    for j, robot in enumerate(fleet.robots):
        phrases = (*robot.capabilities, *robot.environments, robot.name)
        scores[j] = len(task_stems & stems(" ".join(phrases)))
        card = " | ".join((*robot.environments, *robot.capabilities)).lower()
        scores[j] += sum(any(phrase in card for phrase in SCENE_PHRASES.get(tag, ())) for tag in tags)
    return scores


def keyword_rules(test: Sequence[TaskRecord], fleet: Fleet) -> np.ndarray:
    """No training: softmax over robots (temperature 1) of `keyword_scores`.

    At temperature 1 a robot one shared stem ahead gets e (2.7) times the odds of the next; a task
    matching nothing gets a uniform 1/N, whose top-1 is the first robot in fleet order.
    """
    _check_records(test, "test")
    return _softmax(np.stack([keyword_scores(record.task, fleet) for record in test]))


def tfidf_logistic(train: Sequence[TaskRecord], test: Sequence[TaskRecord], fleet: Fleet, seed: int = 0) -> np.ndarray:
    """Tf-idf of word 1-2 grams (sublinear tf) and one balanced logistic regression per robot.

    A robot that is never (always) suitable in training has nothing to separate and gets
    probability 0 (1) on every test task.
    """
    _check_records(train, "training")
    _check_records(test, "test")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vectorizer.fit_transform([record.task for record in train])
    x_test = vectorizer.transform([record.task for record in test])
    targets = robot_targets(train, fleet)
    probs = np.zeros((len(test), fleet.num_robots), dtype=np.float64)
    for j in range(fleet.num_robots):
        column = targets[:, j]
        if column.min() == column.max():
            probs[:, j] = column[0]
            continue
        classifier = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed)
        classifier.fit(x_train, column)
        probs[:, j] = classifier.predict_proba(x_test)[:, list(classifier.classes_).index(1.0)]
    return probs


@torch.no_grad()
def _embed(encoder: TextEncoder, texts: list[str], batch_size: int = 64) -> np.ndarray:
    was_training = encoder.training
    encoder.eval()
    parts = [encoder(**encoder.tokenize(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)]
    encoder.train(was_training)
    return torch.cat(parts).float().numpy()


def embedding_zero_shot(test: Sequence[TaskRecord], fleet: Fleet, encoder: TextEncoder) -> np.ndarray:
    """No training: softmax over robots of cos(task, `card_text(robot)`) / `ZERO_SHOT_TEMPERATURE`.

    `encoder` is the all-MiniLM-L6-v2 `TextEncoder` (`ember_core.model.text_encoder.minilm()`); its
    embeddings are L2-normalised, so the dot product is the cosine.
    """
    _check_records(test, "test")
    tasks = _embed(encoder, [record.task for record in test])
    cards = _embed(encoder, [card_text(robot) for robot in fleet.robots])
    return _softmax(tasks @ cards.T, ZERO_SHOT_TEMPERATURE)


BaselineFn = Callable[[Sequence[TaskRecord], Sequence[TaskRecord], Fleet, int], np.ndarray]


@dataclass(frozen=True)
class Baseline:
    """A named baseline: `run(train, test, fleet, seed)` -> (len(test), N) probabilities."""

    name: str
    description: str
    run: BaselineFn


BASELINES: dict[str, Baseline] = {
    baseline.name: baseline
    for baseline in (
        Baseline("majority set", "the training split's most frequent gold set, for every task",
                 lambda train, test, fleet, seed: majority_set(train, test, fleet)),
        Baseline("keyword rules", "shared word stems with each card + scene rules, softmax (T=1); no training",
                 lambda train, test, fleet, seed: keyword_rules(test, fleet)),
        Baseline("tf-idf logistic", "word 1-2 gram tf-idf, one balanced logistic regression per robot",
                 tfidf_logistic),
        Baseline("MiniLM zero-shot", f"cosine of all-MiniLM-L6-v2 task and card embeddings, softmax "
                 f"(T={ZERO_SHOT_TEMPERATURE}); no training",
                 lambda train, test, fleet, seed: embedding_zero_shot(test, fleet, minilm())),
    )
}
