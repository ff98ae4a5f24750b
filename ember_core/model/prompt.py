"""The text layout the model reads: image slots, fleet cards, task, and the special-token markers.

A full sequence is `prompt <|reasoning_start|> 4 steps <|reasoning_end|> <|action_plan|> plan <eos>`;
the Selector encodes the prompt, then generates the reasoning and the plan after their markers.
"""
from __future__ import annotations

from ember_core.fleet import Fleet
from ember_core.robot import RobotType

IMAGE = "<|image|>"
SELECTION = "<|robot_selection|>"
REASONING_START = "<|reasoning_start|>"
REASONING_END = "<|reasoning_end|>"
ACTION_PLAN = "<|action_plan|>"


def card_text(robot: RobotType) -> str:
    """One robot's card as the capability-aware scorer embeds it (the dataset's per-robot layout)."""
    return (
        f"{robot.name}: {robot.description}\n"
        f"capabilities: {', '.join(robot.capabilities)},\n"
        f"limitations: {', '.join(robot.limitations)},\n"
        f"environments: {', '.join(robot.environments)}"
    )


def selection_prompt(task: str, fleet: Fleet, image_tokens: int) -> str:
    """Image slots, the fleet's cards (the dataset's instruction text), the task, then `<|robot_selection|>`.

    The selection marker ends the prompt so its hidden state has read everything before it; the
    reasoning and the plan are generated after it.
    """
    return f"{IMAGE * image_tokens}{fleet.render_cards()}\nTask: {task}\n{SELECTION}"

