"""Fleets grow past what fits the language model's prompt: 50 robots (the built-ins plus generated ones) select correctly."""
from __future__ import annotations

import sys

import pytest

from conftest import REPO
from ember_core.request import SelectionRequest
from ember_core.selector import Selector

sys.path.insert(0, str(REPO / "tools"))
from generated_fleet import CLEAR_TASKS, write_fleet  # noqa: E402


@pytest.fixture(scope="module")
def selector(tmp_path_factory) -> Selector:
    return Selector(robots_file=write_fleet(tmp_path_factory.mktemp("fleet50"), 50), device="cpu")


def test_a_fleet_of_50_selects_the_robot_each_clear_task_is_for(selector):
    assert len(selector.fleet) == 50 and selector.processor.card_detail != "full"
    requests = [SelectionRequest(task, top_k=3, return_reasoning=False) for task in CLEAR_TASKS]
    chosen = {request.task: selection.candidates[0].robot_id for request, selection in
              zip(requests, selector.select_batch(requests))}
    assert chosen == CLEAR_TASKS


def test_a_fleet_of_50_explains_within_the_models_context(selector):
    selection = selector.select(SelectionRequest("Pick apples from the orchard trees", top_k=50))
    assert selection.status == "ok" and len(selection.candidates) == 50 and selection.reasoning is not None


def test_the_prompt_keeps_full_cards_while_they_fit(fleet):
    small = Selector(fleet=fleet, device="cpu")
    assert small.processor.card_detail == "full"
