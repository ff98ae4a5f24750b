"""The new-robot encoder (ember_core/model/new_robot_encoder.py): the sentence encoder with its top layers tuned to
tell robots apart by their cards, which embeds tasks and cards for the robots added after training only."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import REPO
from ember_core import load_fleet
from ember_core.fields import FieldError
from ember_core.model.config import SHIPPED_NEW_ROBOT_ENCODER, preset
from ember_core.model.new_robot_encoder import NewRobotEncoder, load_new_robot_encoder, new_robot_encoder_file
from ember_core.model.text_encoder import minilm
from ember_core.new_robot_steps import fit_new_robot_classifier, fleet_steps, labelled_steps
from ember_core.part_scorer import PART_SOURCES, read_sources, sources_digest
from ember_core.pretrained import build_model, load_pretrained, save_pretrained
from ember_core.prompt import card_phrases
from ember_train.new_robot_encoder import (
    NEW_ROBOT_SOURCES,
    SHIPPED_SETTINGS,
    TEMPERATURE,
    read_robot_kinds,
    tune_new_robot_encoder,
)
from ember_train.task_memory import remember_tasks

SNAKE_FLEET = REPO / "tests" / "data" / "robots_with_snake.yaml"
TASKS = ["Inspect the hull of a moored ship", "Deliver a parcel across the campus", "Film the roof from above"]
ROBOTS = np.array([[0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=np.float32)


@pytest.fixture(scope="module")
def encoder():
    return minilm()


def embed(module, encoder, texts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return module(**encoder.tokenize(texts))


def test_an_untuned_copy_embeds_as_the_sentence_encoder_and_shares_all_but_its_top_layers(encoder):
    copy = NewRobotEncoder(encoder, 2)
    assert torch.allclose(embed(copy, encoder, TASKS), embed(encoder, encoder, TASKS), atol=1e-6)
    layers = encoder.model.encoder.layer
    assert [copy.model.encoder.layer[i] is layers[i] for i in range(6)] == [True] * 4 + [False] * 2
    assert copy.model.embeddings is encoder.model.embeddings
    assert sorted({name.split(".")[2] for name in copy.tuned_state()}) == ["4", "5"]
    assert not any(parameter.requires_grad for parameter in copy.parameters())
    with pytest.raises(ValueError, match="1 to 6 layers"):
        NewRobotEncoder(encoder, 7)


def card_fit(module, encoder, robots, steps: list[dict]) -> float:
    """The mean log-probability of each step's robots under the training loss's soft maximum over card phrases."""
    robots = list(robots)
    phrases = [(i, phrase) for i, robot in enumerate(robots) for phrase in card_phrases(robot)]
    cards = embed(module, encoder, [phrase for _, phrase in phrases])
    tasks = embed(module, encoder, [step["clause"] for step in steps])
    owner = torch.tensor([i for i, _ in phrases])
    similarity = tasks @ cards.T / TEMPERATURE
    scores = torch.stack([torch.logsumexp(similarity[:, owner == i], 1) for i in range(len(robots))], 1).log_softmax(1)
    targets = torch.tensor([[robot.id in step["robots"] for robot in robots] for step in steps], dtype=torch.float32)
    return float((scores * targets / targets.sum(1, keepdim=True)).sum(1).mean())


def test_tuning_brings_steps_nearer_their_robots_cards_and_leaves_the_sentence_encoder_as_it_was(encoder):
    fleet = load_fleet()
    steps = [step for step in read_sources(PART_SOURCES) if step["robots"]][::70]  # about 100, every robot's
    before = embed(encoder, encoder, TASKS)
    tuned = tune_new_robot_encoder(encoder, fleet, steps, layers=1, epochs=3, learning_rate=2e-4)
    assert card_fit(tuned, encoder, fleet, steps) > card_fit(NewRobotEncoder(encoder, 1), encoder, fleet, steps) + 0.05
    assert torch.equal(embed(encoder, encoder, TASKS), before)
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    assert not torch.allclose(embed(tuned, encoder, TASKS), before, atol=1e-3)


def test_the_other_robot_kinds_are_cards_whose_steps_name_robots_of_their_own_domain():
    robots, steps = read_robot_kinds()
    ids = [robot.id for robot in robots]
    assert len(ids) == len(set(ids)) == 80 and not set(ids) & set(load_fleet(SNAKE_FLEET).ids)
    assert all(len(robot.examples) == 4 and robot.description and robot.capabilities for robot in robots)
    assert len({step["clause"] for step in steps}) == len(steps) == 4800
    written_twice = [{"cln_floor_scrubbing_robot", "log_floor_scrubbing_robot"},
                     {"cln_solar_panel_washing_robot", "ind_solar_panel_cleaning_robot"},
                     {"con_road_line_marking_robot", "trn_road_marking_painting_robot"}]
    for step in steps:
        assert step["robots"] and set(step["robots"]) <= set(ids), step
        assert len({robot.split("_")[0] for robot in step["robots"]}) == 1 or set(step["robots"]) in written_twice, step
    counts = {robot: sum(robot in step["robots"] for step in steps) for robot in ids}
    assert min(counts.values()) >= 60


def test_tuning_on_other_kinds_brings_their_steps_nearer_their_own_cards(encoder):
    fleet = load_fleet()
    steps = [step for step in read_sources(PART_SOURCES) if step["robots"]][::70]
    robots, kind_steps = read_robot_kinds()
    robots = [robot for robot in robots if robot.id.startswith("cln_")][:6]
    own = [step for step in kind_steps if set(step["robots"]) & {robot.id for robot in robots}][::4]
    settings = {"layers": 1, "epochs": 3, "learning_rate": 2e-4}
    alone = tune_new_robot_encoder(encoder, fleet, steps, **settings)
    with_kinds = tune_new_robot_encoder(encoder, fleet, steps, kinds=(robots, own), **settings)
    assert card_fit(with_kinds, encoder, robots, own) > card_fit(alone, encoder, robots, own) + 0.05
    with pytest.raises(ValueError, match="a card phrase for every robot"):
        tune_new_robot_encoder(encoder, fleet, steps, kinds=(robots, []), **settings)


def test_the_shipped_file_holds_the_top_layers_tuned_on_the_shipped_steps(encoder):
    path = new_robot_encoder_file(SHIPPED_NEW_ROBOT_ENCODER)
    with safe_open(str(path), framework="pt") as stored:
        metadata = stored.metadata()
    assert json.loads(metadata["sources"]) == [path.name for path in NEW_ROBOT_SOURCES]
    assert metadata["digest"] == sources_digest(NEW_ROBOT_SOURCES)  # refit it (tools/fit_new_robot_encoder.py) after a change
    assert json.loads(metadata["settings"]) == SHIPPED_SETTINGS
    loaded = load_new_robot_encoder(encoder, SHIPPED_NEW_ROBOT_ENCODER)
    assert len(loaded.tuned) == SHIPPED_SETTINGS["layers"]
    assert not torch.allclose(embed(loaded, encoder, TASKS), embed(encoder, encoder, TASKS), atol=1e-3)


def test_a_file_that_is_not_this_encoders_top_layers_is_refused_with_its_name(encoder, tmp_path):
    with pytest.raises(ValueError, match="missing.safetensors: cannot read"):
        load_new_robot_encoder(encoder, str(tmp_path / "missing.safetensors"))
    state = NewRobotEncoder(encoder, 2).tuned_state()
    save_file({name: tensor for name, tensor in state.items() if ".5." not in name}, str(tmp_path / "gap.safetensors"))
    with pytest.raises(ValueError, match="gap.safetensors: not the top layers"):
        load_new_robot_encoder(encoder, str(tmp_path / "gap.safetensors"))
    with pytest.raises(FieldError, match="new_robot_encoder"):
        preset("tiny", new_robot_encoder=SHIPPED_NEW_ROBOT_ENCODER)  # it tunes a sentence encoder the model must have


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny", text_encoder="minilm", new_robot_encoder=SHIPPED_NEW_ROBOT_ENCODER), load_fleet())
    remember_tasks(model, processor, TASKS, ROBOTS)
    return save_pretrained(model, processor, tmp_path_factory.mktemp("new-robot") / "model")


def test_a_checkpoint_keeps_the_memory_by_the_new_robot_encoder_but_not_the_encoder(model_dir, encoder):
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as stored:
        names = list(stored.keys())
        memory = stored.get_tensor("robot_head.new_robot_memory").float()
    assert not any(name.startswith(("new_robot_encoder.", "text_encoder.")) for name in names)
    expected = embed(load_new_robot_encoder(encoder, SHIPPED_NEW_ROBOT_ENCODER), encoder, TASKS)
    assert torch.allclose(memory, expected, atol=2e-3)  # stored in the model's dtype
    model, _ = load_pretrained(model_dir)
    assert torch.allclose(model.robot_head.new_robot_memory, memory)
    with pytest.raises(ValueError, match="remembers the 3 tasks embedded by it too"):
        model.robot_head.set_task_memory(model.robot_head.task_memory)


def test_a_fleet_with_a_new_robot_is_scored_in_the_new_robot_encoders_space_with_the_robots_steps(model_dir, encoder):
    model, processor = load_pretrained(model_dir, fleet=load_fleet(SNAKE_FLEET))
    batch = processor.collate([processor.features(task) for task in ["Crawl through the drain pipe", *TASKS]])
    with torch.no_grad():
        out = model(**batch)
        task = model.new_robot_encoder(batch["task_input_ids"], batch["task_attention_mask"])
        cards = model.new_robot_encoder(model.card_text_input_ids, model.card_text_attention_mask)
        rows, owner = fleet_steps(model.config.robot_ids)
        texts = [labelled_steps()[row][0] for row in rows]
        steps = torch.cat([embed(model.new_robot_encoder, encoder, texts[start:start + 256])
                           for start in range(0, len(texts), 256)])
    assert len(texts) == 5304 and sorted(set(owner.tolist())) == [0, 1, 2, 3, 4]  # the snake has no labelled step
    classifier = tuple(torch.from_numpy(part) for part in fit_new_robot_classifier(
        cards.numpy(), model.card_text_owner.numpy(), model.num_robots, steps.numpy(), owner))
    head = model.robot_head
    assert torch.allclose(out["robot_logits"][:, 5], head.new_robot_logits(task, classifier)[:, 5], atol=1e-4)
    task_embedding = model.task_embedding(batch["task_input_ids"], batch["task_attention_mask"])
    cards_frozen = model.card_embeddings()
    args = (None, cards_frozen, task_embedding, model.card_text_owner, model.num_robots, model.card_classifier(cards_frozen))
    expected, _ = head.card_logits(*args, (task, classifier))
    assert torch.allclose(out["card_logits"], expected, atol=1e-4)  # every robot's log-odds from that classifier
    assert not torch.allclose(out["card_logits"][:, :5], head.card_logits(*args)[0][:, :5], atol=1e-3)
    embedded = model._new_robot_steps
    model.set_cards(processor.card_inputs())  # another fleet's cards: the steps are not embedded again
    with torch.no_grad():
        assert torch.allclose(model(**batch)["robot_logits"], out["robot_logits"], atol=1e-5)
    assert model._new_robot_steps is embedded


def test_a_fleet_without_a_new_robot_does_not_run_the_new_robot_encoder(model_dir):
    model, processor = load_pretrained(model_dir)
    batch = processor.collate([processor.features(task) for task in TASKS])
    with torch.no_grad():
        logits = model(**batch)["robot_logits"]
        for parameter in model.new_robot_encoder.tuned.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        model.set_cards(processor.card_inputs())
        assert torch.equal(model(**batch)["robot_logits"], logits)
    assert model._new_robot_cards is None


def test_the_steps_beside_the_cards_are_the_fleets_robots_single_robot_steps():
    single = [step for step in read_sources(PART_SOURCES) if len(step["robots"]) == 1]
    assert labelled_steps() == tuple((step["clause"], step["robots"][0]) for step in single)
    rows, owner = fleet_steps(["snake_robot", "drone", "robot_with_legs"])
    assert [labelled_steps()[row] for row in rows] == [(step["clause"], step["robots"][0]) for step in single
                                                       if step["robots"][0] in ("drone", "robot_with_legs")]
    assert owner.tolist() == [1 if labelled_steps()[row][1] == "drone" else 2 for row in rows]
    assert len(fleet_steps(["snake_robot"])[0]) == 0


def test_the_steps_embeddings_are_kept_in_the_card_cache_between_runs(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    first, _ = load_pretrained(model_dir, fleet=load_fleet(SNAKE_FLEET))
    computed = first._labelled_step_embeddings()
    assert computed.shape == (len(labelled_steps()), 384) and len(list(tmp_path.rglob("*.npz"))) == 1
    again, _ = load_pretrained(model_dir, fleet=load_fleet(SNAKE_FLEET))
    monkeypatch.setattr(again, "_new_robot_embeddings", lambda texts: pytest.fail("embedded again"))
    np.testing.assert_array_equal(again._labelled_step_embeddings(), computed)
    with torch.no_grad():
        for parameter in again.new_robot_encoder.tuned.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    monkeypatch.setattr(again, "_new_robot_embeddings", lambda texts: np.zeros((len(texts), 384), np.float32))
    assert not again._labelled_step_embeddings().any()  # another encoder: another cache entry
