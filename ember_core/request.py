"""SelectionRequest: one task (and optional camera image) with the settings that apply to it alone."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ember_core.availability import FleetStatus

if TYPE_CHECKING:  # the CLI reads the defaults below before deciding to load torch
    from ember_core.images import ImageInput
    from ember_core.selection import ImageInfo

# The one home of these defaults: the CLI, the ROS node's parameters and the API all read them here.
DEFAULT_TOP_K = 3
DEFAULT_CONFIDENCE_THRESHOLD = 0.5


@dataclass(frozen=True)
class SelectionRequest:
    """What the Selector is asked: rank the fleet for `task` (with `image` when there is one).

    `top_k` and `confidence_threshold` are per request, so adapters never change the Selector to
    serve one caller. `fleet_status` is the fleet manager's view of busy and offline robots;
    `image_info` describes the camera frame (stamp, frame id, age) for the result document.
    """

    task: str
    image: ImageInput = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    task_id: str | None = None
    image_info: ImageInfo | None = None
    top_k: int = DEFAULT_TOP_K
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    return_reasoning: bool = True
    fleet_status: FleetStatus = field(default_factory=FleetStatus)
