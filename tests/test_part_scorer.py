"""The part scorer: fitted on the shipped labelled steps, mixed into the team rule's part probabilities."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

import ember_core.part_scorer as part_scorer
from ember_core.part_scorer import PART_CLAUSES_FILE, PartScorer, load_part_scorer, read_clauses
from ember_core.request import SelectionRequest
from ember_core.selector import Selector
from ember_train.part_scorer_fit import fit_part_scorer


@pytest.fixture(scope="module")
def selector() -> Selector:
    return Selector(device="cpu")


def test_the_shipped_part_scorer_is_the_fit_of_the_shipped_steps(selector):
    shipped = PartScorer.load()
    assert shipped.clauses_sha256 == hashlib.sha256(PART_CLAUSES_FILE.read_bytes()).hexdigest()
    assert shipped.encoder == selector.backend.config.text_encoder and shipped.robots == tuple(selector.fleet.ids)
    refitted = fit_part_scorer(selector, read_clauses())
    np.testing.assert_allclose(refitted.weight, shipped.weight, atol=1e-3)
    np.testing.assert_allclose(refitted.bias, shipped.bias, atol=1e-3)


def test_every_labelled_step_names_robots_of_the_default_fleet(selector):
    clauses = read_clauses()
    assert len(clauses) == len({clause["clause"] for clause in clauses}) >= 400
    assert all(clause["robots"] and set(clause["robots"]) <= set(selector.fleet.ids) for clause in clauses)


def test_the_scorer_mixes_the_robots_it_knows_and_leaves_the_others():
    scorer = PartScorer("minilm", ("drone", "humanoid"), np.array([[4.0, 0.0], [0.0, 4.0]], dtype=np.float32),
                        np.array([0.0, -1.0], dtype=np.float32), "")
    model = np.array([[0.2, 0.3, 0.4]], dtype=np.float32)  # drone, snake_robot, humanoid
    mixed = scorer.mix(model, np.array([[3.0, 0.0]]), ["drone", "snake_robot", "humanoid"])
    mix, sigmoid = part_scorer.MIX, lambda x: 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(mixed[0], [(1 - mix) * 0.2 + mix * sigmoid(4.0), 0.3, (1 - mix) * 0.4 + mix * sigmoid(-1.0)],
                               rtol=1e-6)
    assert scorer.mix(model[:, :2], np.array([[3.0, 0.0]]), ["drone", "snake_robot"])[0, 1] == pytest.approx(0.3)


def test_the_scorer_serves_only_the_encoder_it_reads():
    assert load_part_scorer(PartScorer.load().encoder) is not None
    assert load_part_scorer(None) is None and load_part_scorer("another-encoder") is None


def test_the_selector_mixes_the_part_scorer_into_each_part(selector, monkeypatch):
    task = "Look down on the harbour from the air for the oil slick, then dive and check the hull of the tanker."
    with_scorer = selector.select(SelectionRequest(task)).to_document()
    monkeypatch.setattr(selector, "part_scorer", None)
    without = selector.select(SelectionRequest(task)).to_document()
    assert with_scorer["team"] == ["drone", "underwater_robot"] and without["team"] == []  # "harbour": under water
    assert [c["confidence"] for c in with_scorer["candidates"]] == [c["confidence"] for c in without["candidates"]]
