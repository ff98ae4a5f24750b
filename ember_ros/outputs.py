"""The result topics: the typed selection, and the JSON texts of the same result for JSON consumers."""
from __future__ import annotations

import json
from typing import Any

# ember_msgs/Selection: the whole result, with the camera image's header.
SELECTION = "robot_selection"
# std_msgs/String, JSON: the same result as the selection document, then its reasoning part, then its team and plan.
SELECTION_JSON, REASONING, PLAN = "robot_selection/json", "selection_reasoning", "subtask_plan"
JSON_TOPICS = (SELECTION_JSON, REASONING, PLAN)
# Every JSON message repeats these, so a consumer can join the three topics (and the camera frame).
JOIN_KEYS = ("request_id", "task_id", "task", "status", "stamp", "image")


def split_document(document: dict[str, Any]) -> dict[str, str]:
    """JSON topic -> text: the whole document, then its reasoning part, then its team and plan."""
    common = {key: document[key] for key in JOIN_KEYS}
    parts = {
        SELECTION_JSON: document,
        REASONING: {"schema": "ember.reasoning/1", **common, "reasoning": document["reasoning"]},
        PLAN: {"schema": "ember.plan/1", **common, "team": document["team"], "plan": document["plan"]},
    }
    return {topic: json.dumps(part, ensure_ascii=False) for topic, part in parts.items()}
