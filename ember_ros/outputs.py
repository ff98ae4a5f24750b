"""The three result topics and what each carries of one selection document."""
from __future__ import annotations

import json
from typing import Any

SELECTION, REASONING, PLAN = "robot_selection", "selection_reasoning", "subtask_plan"
OUTPUT_TOPICS = (SELECTION, REASONING, PLAN)
# Every message repeats these, so a consumer can join the three topics (and the camera frame).
JOIN_KEYS = ("request_id", "task_id", "task", "status", "stamp", "image")


def split_document(document: dict[str, Any]) -> dict[str, str]:
    """Topic -> JSON text: the whole document, then its reasoning part, then its team and plan."""
    common = {key: document[key] for key in JOIN_KEYS}
    parts = {
        SELECTION: document,
        REASONING: {"schema": "ember.reasoning/1", **common, "reasoning": document["reasoning"]},
        PLAN: {"schema": "ember.plan/1", **common, "team": document["team"], "plan": document["plan"]},
    }
    return {topic: json.dumps(part, ensure_ascii=False) for topic, part in parts.items()}
