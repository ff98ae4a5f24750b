"""The part scorer: fitted on the shipped labelled steps, mixed into the team rule's part probabilities."""
from __future__ import annotations

import numpy as np
import pytest

import ember_core.part_scorer as part_scorer
from ember_core.part_scorer import (BEYOND_FLEET_FILE, PART_SOURCES, TASK_SCORER_FILE, TASK_SOURCES, PartScorer,
                                   WordFeatures, load_part_scorer, load_task_scorer, read_clauses, sources_digest)
from ember_core.request import SelectionRequest
from ember_core.selector import Selector
from ember_train.data import TaskRecord
from ember_train.evaluate import score_records
from ember_train.part_scorer_fit import fit_part_scorer


@pytest.fixture(scope="module")
def selector() -> Selector:
    return Selector(device="cpu")


def test_the_shipped_part_scorer_is_the_fit_of_the_shipped_steps(selector):
    shipped = PartScorer.load()
    assert shipped.clauses_sha256 == sources_digest(PART_SOURCES)
    assert shipped.encoder == selector.backend.config.text_encoder and shipped.robots == tuple(selector.fleet.ids)
    clauses = read_clauses()
    refitted = fit_part_scorer(selector)
    assert refitted.words.vocabulary == shipped.words.vocabulary
    np.testing.assert_allclose(refitted.words.idf, shipped.words.idf, atol=1e-5)
    # L-BFGS stops within its tolerance, at points that differ by about 1e-3 in a weight between BLAS builds;
    # what the Selector reads, each step's probabilities, must agree to that precision.
    texts = [clause["clause"] for clause in clauses]
    embedding = selector.backend.relevance.embed(texts)
    np.testing.assert_allclose(refitted.probabilities(embedding, texts), shipped.probabilities(embedding, texts),
                               atol=5e-3)
    np.testing.assert_allclose(refitted.bias, shipped.bias, atol=5e-3)


def test_every_labelled_step_names_robots_of_the_default_fleet(selector):
    clauses = read_clauses()
    assert len(clauses) == len({clause["clause"].lower() for clause in clauses}) >= 1400
    assert all(clause["robots"] and set(clause["robots"]) <= set(selector.fleet.ids) for clause in clauses)


def test_the_shipped_task_scorer_is_the_fit_of_the_steps_and_the_jobs_beyond_the_fleet(selector):
    steps, beyond = read_clauses(), read_clauses(BEYOND_FLEET_FILE)
    assert len(beyond) == 450 and all(job["robots"] == [] for job in beyond)
    assert not {job["clause"].lower() for job in beyond} & {step["clause"].lower() for step in steps}
    shipped = PartScorer.load(TASK_SCORER_FILE)
    assert shipped.clauses_sha256 == sources_digest(TASK_SOURCES)
    refitted = fit_part_scorer(selector, TASK_SOURCES)
    assert refitted.words.vocabulary == shipped.words.vocabulary
    texts = [clause["clause"] for clause in steps[::10] + beyond]
    embedding = selector.backend.relevance.embed(texts)
    np.testing.assert_allclose(refitted.probabilities(embedding, texts), shipped.probabilities(embedding, texts),
                               atol=5e-3)
    assert load_task_scorer(shipped.encoder) is not None and load_task_scorer(None) is None


def test_the_task_scorer_tells_a_job_beyond_the_fleet_from_one_within_it(selector):
    """The jobs no robot of the fleet can do taught it that a job can lie outside the fleet: every robot is
    unlikely for a job beyond all of them (less than half as likely as for the scorer of the steps alone), while
    a robot's own job stays likely for it."""
    scorer = PartScorer.load(TASK_SCORER_FILE)
    texts = ["lift the forty-tonne transformer onto its plinth", "fly over the field and photograph the crop"]
    embedding = selector.backend.relevance.embed(texts)
    probabilities = scorer.probabilities(embedding, texts)
    assert probabilities[0].max() < 0.2
    assert probabilities[1, scorer.robots.index("drone")] > 0.8
    steps_only = PartScorer.load().probabilities(embedding[:1], texts[:1])
    assert probabilities[0].max() < 0.5 * steps_only.max()


def test_word_features_are_tf_idf_of_words_and_word_pairs():
    words = WordFeatures.fit(["dive to the lake bed", "search the lake bed", "fly over the lake", "fly over it"])
    assert words.vocabulary == ("bed", "fly", "fly over", "lake", "lake bed", "over", "the", "the lake")
    idf = dict(zip(words.vocabulary, words.idf))
    assert idf["the"] == pytest.approx(np.log(5 / 4) + 1) and idf["fly"] == pytest.approx(np.log(5 / 3) + 1)
    row = words(["Fly over the lake, the lake!", "a boat"])
    raw = {"fly": idf["fly"], "fly over": idf["fly over"], "over": idf["over"], "the": (1 + np.log(2)) * idf["the"],
           "lake": (1 + np.log(2)) * idf["lake"], "the lake": (1 + np.log(2)) * idf["the lake"], "lake bed": 0.0, "bed": 0.0}
    expected = np.array([raw[term] for term in words.vocabulary]) / np.linalg.norm(list(raw.values()))
    np.testing.assert_allclose(row[0], expected, rtol=1e-5)
    assert not row[1].any()  # no known term: a zero row, not a division by zero


def test_the_scorer_mixes_the_robots_it_knows_and_leaves_the_others():
    words = WordFeatures(("dive",), np.array([1.0], dtype=np.float32))
    scorer = PartScorer("minilm", ("drone", "humanoid"), np.array([[4.0, 0.0], [0.0, 4.0]], dtype=np.float32),
                        words, np.array([[-2.0], [0.0]], dtype=np.float32), np.array([0.0, -1.0], dtype=np.float32), "")
    model = np.array([[0.2, 0.3, 0.4], [0.2, 0.3, 0.4]], dtype=np.float32)  # drone, snake_robot, humanoid
    embedding = np.array([[3.0, 0.0], [3.0, 0.0]])
    mixed = scorer.mix(model, embedding, ["look down", "dive"], ["drone", "snake_robot", "humanoid"])
    mix, sigmoid = part_scorer.MIX, lambda x: 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(mixed[:, 0], [(1 - mix) * 0.2 + mix * sigmoid(4.0), (1 - mix) * 0.2 + mix * sigmoid(2.0)],
                               rtol=1e-6)
    np.testing.assert_allclose(mixed[:, 1:], [[0.3, (1 - mix) * 0.4 + mix * sigmoid(-1.0)]] * 2, rtol=1e-6)
    assert scorer.mix(model[:, :2], embedding, ["look down", "dive"], ["drone", "snake_robot"])[0, 1] == pytest.approx(0.3)


def test_whole_tasks_unlike_the_training_tasks_get_the_scorers_log_odds_added():
    words = WordFeatures(("dive",), np.array([1.0], dtype=np.float32))
    scorer = PartScorer("minilm", ("drone", "humanoid"), np.array([[4.0, 0.0], [0.0, 4.0]], dtype=np.float32),
                        words, np.array([[-2.0], [0.0]], dtype=np.float32), np.array([0.0, -1.0], dtype=np.float32), "")
    head = np.array([[1.0, 2.0, 3.0]] * 3, dtype=np.float32)  # drone, snake_robot, humanoid
    embedding, ids = np.array([[3.0, 0.0]] * 3), ["drone", "snake_robot", "humanoid"]
    familiarity = np.array([0.2, 0.9, part_scorer.FAMILIAR])  # only the first is unlike every training task
    logits = part_scorer.task_logits(scorer, head, embedding, familiarity, ["look down", "dive", "dive"], ids)
    weight = part_scorer.TASK_WEIGHT
    np.testing.assert_allclose(logits[0], [1.0 + weight * 4.0, 2.0, 3.0 + weight * -1.0], rtol=1e-5)
    np.testing.assert_array_equal(logits[1:], head[1:])
    for missing in ({"scorer": None}, {"embedding": None}, {"familiarity": None}):
        arguments = {"scorer": scorer, "embedding": embedding, "familiarity": familiarity} | missing
        np.testing.assert_array_equal(part_scorer.task_logits(arguments["scorer"], head, arguments["embedding"],
                                                              arguments["familiarity"], ["look down"] * 3, ids), head)


def test_the_selector_and_the_evaluation_score_a_novel_task_alike(selector):
    task = "Pass the skipper a fresh radio battery across the deck of the moored trawler"
    scores = score_records(selector.model, selector.processor, [TaskRecord(task, ("drone",))], use_images=False)
    outputs = selector.backend.forward(selector.processor.collate([selector.processor.features(task, return_tensors="np")],
                                                                  return_tensors="np"))
    assert outputs.familiarity[0] < part_scorer.FAMILIAR
    assert not np.allclose(scores.logits, outputs.robot_logits, atol=1e-3)  # the scorer moved them
    document = selector.select(SelectionRequest(task, top_k=len(selector.fleet), return_reasoning=False)).to_document()
    confidence = {candidate["robot_id"]: candidate["confidence"] for candidate in document["candidates"]}
    np.testing.assert_allclose([confidence[robot] for robot in selector.fleet.ids],
                               scores.probabilities(selector.processor.config.calibration)[0], atol=1e-3)


def test_the_scorer_serves_only_the_encoder_it_reads():
    assert load_part_scorer(PartScorer.load().encoder) is not None
    assert load_part_scorer(None) is None and load_part_scorer("another-encoder") is None


def test_the_selector_mixes_the_part_scorer_into_each_part(selector, monkeypatch):
    task = "Look down on the harbour from the air for the oil slick, then dive and check the hull of the tanker."
    with_scorer = selector.select(SelectionRequest(task)).to_document()
    monkeypatch.setattr(selector, "part_scorer", None)
    without = selector.select(SelectionRequest(task)).to_document()
    assert with_scorer["team"] == ["drone", "underwater_robot"] and without["team"] == []  # "harbour": under water
    # a task like a training task (familiarity >= FAMILIAR): its own confidences are the head's either way
    assert [c["confidence"] for c in with_scorer["candidates"]] == [c["confidence"] for c in without["candidates"]]


def test_the_selector_splits_a_comma_list_whose_pieces_are_other_robots_work(selector, monkeypatch):
    task = ("Lift the rusted drums off the canal bed, wheel them along the paved towpath to the depot, "
            "and then unscrew their lids by hand.")
    document = selector.select(SelectionRequest(task)).to_document()
    assert document["team"] == ["underwater_robot", "robot_with_wheels", "humanoid"]
    assert [step["description"] for step in document["plan"]["subtasks"]] == [
        "Lift the rusted drums off the canal bed", "wheel them along the paved towpath to the depot",
        "unscrew their lids by hand"]
    monkeypatch.setattr("ember_core.teams.PIECE_OWN", 2.0)  # no piece can reach it: the comma list stays one part
    assert selector.select(SelectionRequest(task)).to_document()["team"] == ["robot_with_wheels", "humanoid"]
