"""The shipped model's outputs stay what they were recorded as (tests/golden_outputs.py), to the last decimal."""
from __future__ import annotations

import json

import pytest

from golden_outputs import GOLDEN_FILE, selections, task_set_metrics

GOLDEN = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))


def test_selection_documents_match_the_recorded_ones():
    current = selections()
    assert [(s["robots"], s["task"], s["scene"]) for s in current] == [
        (s["robots"], s["task"], s["scene"]) for s in GOLDEN["selections"]]
    for now, recorded in zip(current, GOLDEN["selections"]):
        confidences = [c.pop("confidence") for c in now["document"]["candidates"]]
        expected = [c.pop("confidence") for c in recorded["document"]["candidates"]]
        assert confidences == pytest.approx(expected, rel=1e-5, abs=1e-7), now["task"]
        assert now["document"] == recorded["document"], now["task"]


def test_task_set_metrics_match_the_recorded_ones():
    # The tolerance of the confidences: float32 kernels differ in the last bits from one CPU to another, and
    # the calibration errors average those confidences.
    for data, metrics in task_set_metrics().items():
        assert metrics == pytest.approx(GOLDEN["metrics"][data], rel=1e-5, abs=1e-7), data
