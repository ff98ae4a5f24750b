"""The shapes of the server's answers besides the selection document (which ember_core/schemas defines)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ember_core.robot import RobotType


class Problem(BaseModel):
    """Why a request got no selection document: a 4xx the caller can fix, 503 not ready, or an internal error."""

    detail: str = Field(description="what went wrong and what to change")
    request_id: str | None = Field(None, description="internal errors: the id the server log has the details under")


class Health(BaseModel):
    """The process is up and answering; it may still be loading the model (see GET /ready)."""

    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    """The model is loaded: selections are answered."""

    status: Literal["ready"] = "ready"
    model: str = Field(description="the model's name")
    sha: str = Field(description="the model's weights hash")


class Robots(BaseModel):
    """The fleet the server selects from, in order, with each robot's capability card."""

    hash: str = Field(description="the fleet's hash, as in the selection document's fleet.hash")
    robots: list[RobotType] = Field(description="the capability cards, in the fleet's order")


class FleetIds(BaseModel):
    robots: list[str]
    hash: str


class ModelInfo(BaseModel):
    """What `ember model info --json` prints for the served model."""

    name: str
    sha: str
    parameters: dict[str, int] | None = Field(description="parameters per part, and the total; null for an ONNX export")
    config: dict[str, Any] = Field(description="the model config (config.json)")
    fleet: FleetIds
    vocab_size: int
    calibration: dict[str, Any] = Field(description="the calibration the confidences are computed with")
