"""The part scorer: which robots could do one step of a multi-step job, learned from hand-labelled steps.

The model is trained on whole tasks and misreads the short parts of a task that the team rule
(`ember_core.teams`) scores: "get an aerial view of the berths" reads as work for the Underwater Robot.
`assets/part_clauses.jsonl` holds about 7,000 hand-written steps of multi-step jobs, each with every robot
of the default fleet that could do it alone. `python tools/fit_part_scorer.py` fits one logistic regression
per robot (L2, inverse strength C) into `assets/part_scorer.json`, on two kinds of features of a step:

- its unit sentence embedding (the model's own encoder), which carries meaning across phrasings;
- its words and word pairs, TF-IDF weighted (`WordFeatures`), which carry the cues a step names outright
  ("lake bed", "from the air", "by hand", "rubble"), weighed LEXICAL_WEIGHT against the embedding.

The Selector mixes, for each part and each robot the scorer knows, MIX of its probability with 1 - MIX of
the model's calibrated one; a robot it does not know (a plugin's) keeps the model's.

Whole tasks too: the steps are written in operators' words, which the model, trained on the public tasks'
phrasing, misreads more often. For a task unlike every task the model remembers from training (its
familiarity, `RobotHead.familiarity`, below 0.5), TASK_WEIGHT x the scorer's log-odds are added to the
head's logit of each robot the scorer knows, before the calibration (`task_logits`); a task like a training
task keeps the head's logits, which learned the public tasks' labels. The Selector, `ember eval`, training's
validation and `ember calibrate` all score tasks so. Whole tasks are read by the task scorer
(`assets/task_scorer.json`, `load_task_scorer`): the same regressions fitted on the steps and on
`assets/beyond_fleet_jobs.jsonl`, 450 jobs no robot of the fleet could do alone, so that every trained
robot's logit falls for a job beyond the whole fleet, the work a robot added after training is for. The
team rule's parts keep the scorer of the steps alone, on which its settings were chosen.

The scorer reads the embeddings of one sentence encoder (`encoder`, the model config's `text_encoder`) and
is not used with another or without one. C, LEXICAL_WEIGHT, MIX and TASK_WEIGHT were chosen on the
development sets (README, "Teams and plans" and "The default model and results"; `benchmarks/part_scorer.py`).
Plain numpy, so the torch-free runtime uses it too.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
PART_CLAUSES_FILE = ASSETS / "part_clauses.jsonl"
PART_SCORER_FILE = ASSETS / "part_scorer.json"
BEYOND_FLEET_FILE = ASSETS / "beyond_fleet_jobs.jsonl"
TASK_SCORER_FILE = ASSETS / "task_scorer.json"
# The files each scorer is fitted on, in order (`tools/fit_part_scorer.py`).
PART_SOURCES = (PART_CLAUSES_FILE,)
TASK_SOURCES = (PART_CLAUSES_FILE, BEYOND_FLEET_FILE)
MIX = 0.9
TASK_WEIGHT = 0.3
FAMILIAR = 0.5  # familiarity from which a task counts as like a training task
_WORD = re.compile(r"\b\w\w+\b")


def words_and_pairs(text: str) -> list[str]:
    """The terms of a text: its lower-case words of two or more characters, then each pair of neighbours."""
    words = _WORD.findall(text.lower())
    return words + [f"{first} {second}" for first, second in zip(words, words[1:])]


@dataclass(frozen=True)
class WordFeatures:
    """TF-IDF over a fixed vocabulary: (1 + log count) x idf per term, each row scaled to unit length."""

    vocabulary: tuple[str, ...]
    idf: np.ndarray  # (V,)
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {term: column for column, term in enumerate(self.vocabulary)})

    @classmethod
    def fit(cls, texts: Sequence[str], min_count: int = 2) -> WordFeatures:
        """The terms found in at least `min_count` texts, with idf = ln((1 + n) / (1 + texts with it)) + 1."""
        found = Counter(term for text in texts for term in set(words_and_pairs(text)))
        vocabulary = tuple(sorted(term for term, count in found.items() if count >= min_count))
        idf = np.array([math.log((1 + len(texts)) / (1 + found[term])) + 1 for term in vocabulary], dtype=np.float32)
        return cls(vocabulary, idf)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """(T, V) features of the texts; terms outside the vocabulary are left out."""
        index = self.index
        features = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float32)
        for row, text in enumerate(texts):
            for term, count in Counter(words_and_pairs(text)).items():
                if term in index:
                    features[row, index[term]] = (1 + math.log(count)) * self.idf[index[term]]
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class PartScorer:
    """One logistic regression per robot id over a step's unit sentence embedding (encoder `encoder`) and
    its `WordFeatures`."""

    encoder: str
    robots: tuple[str, ...]
    weight: np.ndarray  # (R, D), on the unit embedding
    words: WordFeatures
    word_weight: np.ndarray  # (R, V), on the word features (LEXICAL_WEIGHT folded in)
    bias: np.ndarray  # (R,)
    clauses_sha256: str

    @classmethod
    def load(cls, path: Path = PART_SCORER_FILE) -> PartScorer:
        record = json.loads(Path(path).read_text())
        words = WordFeatures(tuple(record["vocabulary"]), np.asarray(record["idf"], dtype=np.float32))
        return cls(record["encoder"], tuple(record["robots"]), np.asarray(record["weight"], dtype=np.float32),
                   words, np.asarray(record["word_weight"], dtype=np.float32),
                   np.asarray(record["bias"], dtype=np.float32), record["clauses_sha256"])

    def to_record(self) -> dict:
        return {"encoder": self.encoder, "robots": list(self.robots), "clauses_sha256": self.clauses_sha256,
                "weight": np.round(self.weight, 6).tolist(), "bias": np.round(self.bias, 6).tolist(),
                "vocabulary": list(self.words.vocabulary), "idf": np.round(self.words.idf, 6).tolist(),
                "word_weight": np.round(self.word_weight, 6).tolist()}

    def probabilities(self, embedding: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """(T, R): each known robot's probability of doing each of T steps, from their embeddings (T, D) and texts."""
        unit = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
        logits = unit @ self.weight.T + self.words(texts) @ self.word_weight.T + self.bias
        return 1.0 / (1.0 + np.exp(-logits))

    def mix(self, probabilities: np.ndarray, embedding: np.ndarray, texts: Sequence[str],
            fleet_ids: Sequence[str]) -> np.ndarray:
        """The model's part probabilities (T, N) over `fleet_ids` with the scorer's mixed in (module docstring)."""
        mixed = np.array(probabilities, dtype=np.float32)
        scored = self.probabilities(embedding, texts)
        for row, column in self._columns(fleet_ids):
            mixed[:, column] = (1 - MIX) * mixed[:, column] + MIX * scored[:, row]
        return mixed

    def task_logits(self, robot_logits: np.ndarray, embedding: np.ndarray, texts: Sequence[str],
                    fleet_ids: Sequence[str]) -> np.ndarray:
        """Tasks' head logits (B, N) over `fleet_ids` with TASK_WEIGHT x the scorer's log-odds added for each robot
        it knows; a robot it does not know keeps its logit."""
        logits = np.array(robot_logits, dtype=np.float32)
        scored = np.clip(self.probabilities(embedding, texts), 1e-6, 1 - 1e-6)
        log_odds = np.log(scored) - np.log1p(-scored)
        for row, column in self._columns(fleet_ids):
            logits[:, column] += TASK_WEIGHT * log_odds[:, row]
        return logits

    def _columns(self, fleet_ids: Sequence[str]) -> list[tuple[int, int]]:
        """(scorer row, fleet column) of each robot the scorer knows that is in the fleet."""
        fleet_ids = list(fleet_ids)
        return [(row, fleet_ids.index(robot)) for row, robot in enumerate(self.robots) if robot in fleet_ids]


def load_part_scorer(encoder: str | None, path: Path = PART_SCORER_FILE) -> PartScorer | None:
    """The shipped part scorer (or the one at `path`) when it reads the embeddings of `encoder` (a model config's
    text_encoder), else None."""
    scorer = PartScorer.load(path)
    return scorer if encoder and scorer.encoder == encoder else None


def load_task_scorer(encoder: str | None) -> PartScorer | None:
    """The shipped task scorer, which also learned the jobs beyond the fleet (module docstring), as `load_part_scorer`."""
    return load_part_scorer(encoder, TASK_SCORER_FILE)


def sources_digest(sources: Sequence[Path]) -> str:
    """The sha256 of the files a scorer was fitted on, one after the other (`PartScorer.clauses_sha256`)."""
    return hashlib.sha256(b"".join(Path(path).read_bytes() for path in sources)).hexdigest()


def read_clauses(path: Path = PART_CLAUSES_FILE) -> list[dict]:
    """The labelled steps: {"clause": text, "robots": [robot ids]} per line ('#' lines are comments)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]


def read_sources(sources: Sequence[Path]) -> list[dict]:
    """The clauses a scorer is fitted on: those of each file of `sources` (PART_SOURCES, TASK_SOURCES) in turn."""
    return [clause for path in sources for clause in read_clauses(path)]


def task_logits(scorer: PartScorer | None, robot_logits: np.ndarray, embedding: np.ndarray | None,
                familiarity: np.ndarray | None, texts: Sequence[str], fleet_ids: Sequence[str]) -> np.ndarray:
    """The robot logits the confidences are calibrated from (module docstring): the head's, with the scorer's
    added (`PartScorer.task_logits`) for the tasks whose familiarity is below FAMILIAR, when the model has a
    scorer for its encoder."""
    logits = np.array(robot_logits, dtype=np.float32)
    if scorer is None or embedding is None or familiarity is None:
        return logits
    novel = np.flatnonzero(np.asarray(familiarity) < FAMILIAR)
    if len(novel):
        logits[novel] = scorer.task_logits(logits[novel], np.asarray(embedding)[novel], [texts[i] for i in novel],
                                           fleet_ids)
    return logits
