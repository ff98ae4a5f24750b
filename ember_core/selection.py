"""The selection document every adapter emits (schema "ember.selection/1") and its JSON Schema check."""
from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember_core.fleet import Fleet
from ember_core.reasoning import Plan, Reasoning

if TYPE_CHECKING:  # imported where a document is checked: it takes a quarter second, on every start otherwise
    import jsonschema

SCHEMA_VERSION = "ember.selection/1"
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "selection.schema.json"
STATUSES = ("ok", "no_image", "stale_image", "rejected_busy", "invalid_input", "error")
LATENCY_KEYS = ("preprocess", "model", "reasoning")


@dataclass(frozen=True)
class Candidate:
    """One robot in the ranking; `infeasible` holds the reasons plugins gave why it cannot do the task.

    `availability` is what the fleet manager's status says of the robot (available, busy, offline), or
    unknown when no status names it; busy and offline robots rank after free ones and are not selected.
    """

    rank: int
    robot_id: str
    robot_type: str
    confidence: float
    selected: bool
    infeasible: list[str] = field(default_factory=list)
    reasoning: list[str] | None = None  # the step lines, only for robots the Step 4 decision names
    availability: str = "unknown"

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"candidate {self.robot_id!r}: rank must be an integer >= 1, got {self.rank!r}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"candidate {self.robot_id!r}: confidence must be in [0, 1], got {self.confidence!r}")
        object.__setattr__(self, "confidence", float(self.confidence))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "robot_id": self.robot_id,
            "robot_type": self.robot_type,
            "confidence": self.confidence,
            "selected": self.selected,
            "infeasible": list(self.infeasible),
            "reasoning": None if self.reasoning is None else list(self.reasoning),
            "availability": self.availability,
        }


@dataclass(frozen=True)
class ImageInfo:
    """The camera frame a selection used: its stamp (seconds), frame id, age when the request ran, and
    the scene tags the model recognised in it (what the fleet's scene rules were given)."""

    stamp: float | None
    frame_id: str
    age_ms: float | None
    scene: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"stamp": self.stamp, "frame_id": self.frame_id, "age_ms": self.age_ms, "scene": list(self.scene)}


@dataclass(frozen=True)
class Selection:
    """The result of one selection request, whatever its status; `to_document()` is what adapters send."""

    request_id: str
    task: str
    status: str
    errors: list[str]
    stamp: float
    image: ImageInfo | None
    fleet_ids: list[str]
    fleet_hash: str
    model_name: str
    model_sha: str
    top_k: int
    candidates: list[Candidate]
    reasoning: Reasoning | None
    plan: Plan | None
    latency_ms: dict[str, float]
    task_id: str | None = None  # the fleet manager's task id, echoed when the request carried one
    team: list[str] = field(default_factory=list)  # robots needed together, in plan order; empty: one suffices

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"request {self.request_id!r}: unknown status {self.status!r}; use one of {', '.join(STATUSES)}")
        if self.status == "ok" and not self.candidates:
            raise ValueError(f"request {self.request_id!r}: an 'ok' selection needs at least one candidate")
        if sorted(self.latency_ms) != sorted(LATENCY_KEYS):
            raise ValueError(
                f"request {self.request_id!r}: latency_ms has keys {sorted(self.latency_ms)}; "
                f"expected exactly {', '.join(LATENCY_KEYS)}"
            )
        stranger = [robot_id for robot_id in self.team if robot_id not in self.fleet_ids]
        if stranger:
            raise ValueError(f"request {self.request_id!r}: team names {stranger}, not robots of the fleet {self.fleet_ids}")
        for key, value in self.latency_ms.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"request {self.request_id!r}: latency_ms[{key!r}] must be >= 0, got {value!r}")

    @classmethod
    def error(
        cls,
        request_id: str,
        task: str,
        status: str,
        errors: list[str],
        fleet: Fleet,
        model_name: str,
        model_sha: str,
        image: ImageInfo | None = None,
        task_id: str | None = None,
    ) -> Selection:
        """A non-ok result: no candidates, no reasoning or plan, zero latencies."""
        if status == "ok":
            raise ValueError(f"request {request_id!r}: Selection.error needs a non-ok status, one of {', '.join(STATUSES[1:])}")
        return cls(
            request_id=request_id,
            task=task,
            status=status,
            errors=list(errors),
            stamp=time.time(),
            image=image,
            fleet_ids=fleet.ids,
            fleet_hash=fleet.hash,
            model_name=model_name,
            model_sha=model_sha,
            top_k=0,
            candidates=[],
            reasoning=None,
            plan=None,
            latency_ms={key: 0.0 for key in LATENCY_KEYS},
            task_id=task_id,
        )

    def to_document(self) -> dict[str, Any]:
        """The JSON-ready selection document (CONVENTIONS §4), valid against SCHEMA_PATH."""
        return {
            "schema": SCHEMA_VERSION,
            "request_id": self.request_id,
            "task_id": self.task_id,
            "task": self.task,
            "status": self.status,
            "errors": list(self.errors),
            "stamp": self.stamp,
            "image": None if self.image is None else self.image.to_dict(),
            "fleet": {"robots": list(self.fleet_ids), "hash": self.fleet_hash},
            "model": {"name": self.model_name, "sha": self.model_sha},
            "top_k": self.top_k,
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "team": list(self.team),
            "reasoning": None if self.reasoning is None else self.reasoning.to_dict(),
            "plan": None if self.plan is None else self.plan.to_dict(),
            "latency_ms": {key: float(self.latency_ms[key]) for key in LATENCY_KEYS},
        }


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    """The validator for the shipped schema, loaded once; a broken schema file fails here, loudly."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_document(doc: dict) -> None:
    """Raise jsonschema.ValidationError (naming the offending path) if `doc` is not a valid selection document."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(doc))
    if error is not None:
        raise error
