"""The part scorer: which robots could do one step of a multi-step job, learned from hand-labelled steps.

The model is trained on whole tasks and misreads the short parts of a task that the team rule
(`ember_core.teams`) scores: "get an aerial view of the berths" reads as work for the Underwater Robot.
`assets/part_clauses.jsonl` holds 480 hand-written steps of multi-step jobs, each with every robot of the
default fleet that could do it alone. `python tools/fit_part_scorer.py` fits one logistic regression per
robot on their sentence embeddings (L2, inverse strength C) into `assets/part_scorer.json`, and the
Selector mixes, for each part and each robot the scorer knows, MIX of its probability with 1 - MIX of the
model's calibrated one; a robot it does not know (a plugin's) keeps the model's. It reads the embeddings
of one sentence encoder (`encoder`, the model config's `text_encoder`) and is not used with another or
without one. C and MIX were chosen on the development sets (README, "Teams and plans";
`benchmarks/part_scorer.py`). Plain numpy, so the torch-free runtime uses it too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
PART_CLAUSES_FILE = ASSETS / "part_clauses.jsonl"
PART_SCORER_FILE = ASSETS / "part_scorer.json"
MIX = 0.5


@dataclass(frozen=True)
class PartScorer:
    """One logistic regression per robot id over unit sentence embeddings of the encoder `encoder`."""

    encoder: str
    robots: tuple[str, ...]
    weight: np.ndarray  # (R, D)
    bias: np.ndarray  # (R,)
    clauses_sha256: str

    @classmethod
    def load(cls, path: Path = PART_SCORER_FILE) -> PartScorer:
        record = json.loads(Path(path).read_text())
        return cls(record["encoder"], tuple(record["robots"]), np.asarray(record["weight"], dtype=np.float32),
                   np.asarray(record["bias"], dtype=np.float32), record["clauses_sha256"])

    def to_record(self) -> dict:
        return {"encoder": self.encoder, "robots": list(self.robots), "clauses_sha256": self.clauses_sha256,
                "weight": np.round(self.weight, 6).tolist(), "bias": np.round(self.bias, 6).tolist()}

    def probabilities(self, embedding: np.ndarray) -> np.ndarray:
        """(T, R): each known robot's probability of doing each of T parts, from their embeddings (T, D)."""
        unit = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
        return 1.0 / (1.0 + np.exp(-(unit @ self.weight.T + self.bias)))

    def mix(self, probabilities: np.ndarray, embedding: np.ndarray, fleet_ids: tuple[str, ...] | list[str]) -> np.ndarray:
        """The model's part probabilities (T, N) over `fleet_ids` with the scorer's mixed in (module docstring)."""
        mixed = np.array(probabilities, dtype=np.float32)
        scored = self.probabilities(embedding)
        for row, robot in enumerate(self.robots):
            if robot in fleet_ids:
                column = list(fleet_ids).index(robot)
                mixed[:, column] = (1 - MIX) * mixed[:, column] + MIX * scored[:, row]
        return mixed


def load_part_scorer(encoder: str | None) -> PartScorer | None:
    """The shipped part scorer when it reads the embeddings of `encoder` (a model config's text_encoder), else None."""
    scorer = PartScorer.load()
    return scorer if encoder and scorer.encoder == encoder else None


def read_clauses(path: Path = PART_CLAUSES_FILE) -> list[dict]:
    """The labelled steps: {"clause": text, "robots": [robot ids]} per line ('#' lines are comments)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]
