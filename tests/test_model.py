"""EmberVLM parts and composition: registry, shapes and gradients, freezing, persistence, fleet changes, decoding."""
from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from conftest import SNAKE_PLUGIN
from ember_core import load_fleet
from ember_core.calibration import Calibration
from ember_core.model.config import EmberVLMConfig, preset
from ember_core.model.loading import ROBOT_ROWS, file_sha, load_matching
from ember_core.model.registry import create_part, list_parts
from ember_core.model.vision import VisionEncoder
from ember_core.model.vlm import EmberVLM
from ember_core.pretrained import build_model, load_pretrained, save_pretrained
from ember_core.processor import EmberProcessor
from ember_core.prompt import REASONING_START

MODEL_FILES = {"config.json", "model.safetensors"}


@pytest.fixture(scope="module")
def tiny(fleet) -> tuple[EmberVLM, EmberProcessor]:
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny"), fleet)
    return model.eval(), processor


def batch(processor: EmberProcessor, tasks: list[str],
          shown: tuple[bool, ...] = (True, False)) -> dict[str, torch.Tensor]:
    """The processor's batch of `tasks`; the i-th has a (random) image when shown[i]."""
    size = processor.config.image_size
    generator = torch.Generator().manual_seed(0)
    features = [processor.features(task, torch.rand(3, size, size, generator=generator) if image else None)
                for task, image in zip(tasks, shown)]
    return processor.collate(features)


def test_registry_lists_and_creates_parts():
    assert {"repvit_m0_9", "repvit_m1_1"} <= set(list_parts("vision"))
    assert list_parts("language") == ["gpt2", "pretrained"]
    with pytest.raises(ValueError, match="unknown vision part 'resnet50'; registered: repvit_m0_9"):
        create_part("vision", "resnet50")
    with pytest.raises(ValueError, match="unknown part kind 'audio'"):
        list_parts("audio")


@pytest.mark.parametrize("name", list_parts("vision"))
def test_every_vision_part_gives_lm_width_tokens_and_gradients(name):
    encoder = create_part("vision", name, out_dim=24, image_size=64)
    tokens = encoder(torch.rand(2, 3, 64, 64))
    assert tokens.shape == (2, encoder.num_tokens, 24) and encoder.num_tokens == 4
    tokens.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)


def test_language_parts_from_config_and_from_a_local_directory(tmp_path):
    built = create_part("language", "gpt2", vocab_size=100, layers=1, hidden=16, heads=2, context=32,
                        bos_token_id=0, eos_token_id=0)
    logits = built(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 100)
    logits.sum().backward()
    built.save_pretrained(tmp_path / "lm")
    loaded = create_part("language", "pretrained", name_or_path=str(tmp_path / "lm"))
    assert torch.equal(loaded.transformer.wte.weight, built.transformer.wte.weight)
    with pytest.raises(ValueError, match="'no/such-model' .*could not be loaded"):
        create_part("language", "pretrained", name_or_path="no/such-model")


def test_lm_dropout_sets_every_dropout_of_the_built_gpt2(fleet):
    """GPT-2's 0.1 by default; 0 makes a training-mode forward deterministic (as the DDP equality test needs)."""
    default, _ = build_model(preset("tiny"), fleet)
    off, _ = build_model(preset("tiny", lm_dropout=0.0), fleet)
    for model, expected in ((default, 0.1), (off, 0.0)):
        config = model.language_model.config
        assert (config.embd_pdrop, config.attn_pdrop, config.resid_pdrop) == (expected,) * 3
    ids = torch.tensor([[1, 2, 3, 4]])
    off.language_model.train()
    assert torch.equal(off.language_model(input_ids=ids).logits, off.language_model(input_ids=ids).logits)


def test_frozen_vision_keeps_batchnorm_in_eval_and_gets_no_gradients():
    encoder = VisionEncoder("repvit_m0_9", out_dim=16, image_size=32, frozen=True)
    encoder.train()
    norms = [m for m in encoder.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    before = [m.running_mean.clone() for m in norms]
    encoder(torch.rand(2, 3, 32, 32)).sum().backward()
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
    assert all(p.grad is None for p in encoder.backbone.parameters())
    assert encoder.projector.training and all(p.grad is not None for p in encoder.projector.parameters())


def test_a_training_batch_of_one_small_image_uses_the_running_statistics_and_still_trains():
    """At 32 px the last stage is 1x1, where training-mode BatchNorm on one image raised
    "Expected more than 1 value per channel when training" (an epoch's last batch of one sample)."""
    torch.manual_seed(0)
    encoder = VisionEncoder("repvit_m0_9", out_dim=16, image_size=32)
    norms = [m for m in encoder.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    image = torch.rand(1, 3, 32, 32)
    expected = encoder.eval()(image)
    before = {name: value.clone() for name, value in encoder.state_dict().items()}
    encoder.train()
    tokens = encoder(image)
    torch.testing.assert_close(tokens, expected)
    assert all(torch.equal(before[name], value) for name, value in encoder.state_dict().items())
    assert all(m.training for m in norms)  # the next batch trains its BatchNorm again
    tokens.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    encoder(torch.rand(2, 3, 32, 32))  # two images: batch statistics, which move the running ones
    assert not torch.equal(before["backbone.stem.conv1.bn.running_mean"], norms[0].running_mean)


def test_vision_weights_load_from_a_local_file(tmp_path):
    source = VisionEncoder("repvit_m0_9", out_dim=8, image_size=32)
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(tmp_path / "repvit.safetensors"))
    loaded = VisionEncoder("repvit_m0_9", out_dim=8, image_size=32, weights=str(tmp_path / "repvit.safetensors"))
    for key, tensor in source.backbone.state_dict().items():
        assert torch.equal(tensor, loaded.backbone.state_dict()[key]), key
    save_file({"unrelated": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not repvit_m0_9 weights"):
        VisionEncoder("repvit_m0_9", out_dim=8, image_size=32, weights=str(tmp_path / "other.safetensors"))


def test_build_model_lays_the_head_out_for_the_fleet(tiny, fleet):
    model, processor = tiny
    assert model.config.robot_ids == fleet.ids == processor.fleet.ids
    assert model.num_robots == len(fleet) and model.robot_head.mlp[-1].out_features == len(fleet)
    assert (model.name, model.sha) == ("tiny (random init)", "random-init")
    # The preset itself is not changed by building a model for a fleet.
    assert preset("tiny").robot_ids == []
    with pytest.raises(ValueError, match="robot_ids is empty"):
        EmberVLM(preset("tiny"), processor.tokenizer)


def test_forward_and_backward_reach_every_part(tiny):
    model, processor = tiny
    model.train()
    inputs = batch(processor, ["Inspect a pipeline under the sea", "Carry boxes in a warehouse"])
    out = model(**inputs)
    assert out["robot_logits"].shape == (2, 5)
    assert out["card_logits"].shape == out["mlp_logits"].shape == (2, 5)
    assert out["hidden_states"].shape == (*inputs["input_ids"].shape, 32)
    token_scores = model.token_scores(out["hidden_states"][:, -3:], torch.tensor([[[1, 2, 3, 4]] * 3] * 2))
    assert token_scores.shape == (2, 3, 4)
    (out["robot_logits"].sum() + token_scores.mean()).backward()
    for name, part in [("vision", model.vision), ("lm", model.language_model), ("head", model.robot_head),
                       ("explanation adapter", model.explanation_adapter.mlp)]:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), name
    model.zero_grad()
    model.eval()


def test_the_image_changes_the_scores(tiny):
    model, processor = tiny
    inputs = batch(processor, ["Inspect the area"], shown=(True,))
    with torch.no_grad():
        text_only = model(inputs["input_ids"], inputs["attention_mask"])["robot_logits"]
        with_image = model(**inputs)["robot_logits"]
    assert not torch.allclose(text_only, with_image)


def test_a_row_without_an_image_scores_as_if_the_batch_had_no_pixels(tiny):
    """collate zero-fills a missing image; has_image False must make the model ignore those zeros."""
    model, processor = tiny
    tasks = ["Inspect a bridge", "Deliver parcels"]
    mixed = batch(processor, tasks, shown=(True, False))
    with torch.no_grad():
        alone = model(**batch(processor, tasks[1:], shown=(False,)))["robot_logits"]
        together = model(**mixed)["robot_logits"]
        zeros_as_image = model(**{**mixed, "has_image": torch.tensor([True, True])})["robot_logits"]
    assert "pixel_values" not in batch(processor, tasks[1:], shown=(False,))
    assert torch.allclose(together[1], alone[0], atol=1e-5)
    assert not torch.allclose(zeros_as_image[1], alone[0], atol=1e-5)


def test_model_save_and_from_pretrained_give_identical_logits(tiny, tmp_path):
    model, processor = tiny
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == MODEL_FILES
    loaded = EmberVLM.from_pretrained(tmp_path, processor.tokenizer)
    assert not loaded.training and loaded.config == model.config
    assert loaded.name == f"tiny:{tmp_path.name}" and loaded.sha == file_sha(tmp_path / "model.safetensors")
    loaded.set_cards(processor.card_inputs())
    inputs = batch(processor, ["Inspect a bridge", "Deliver parcels"])
    with torch.no_grad():
        expected, got = model(**inputs), loaded(**inputs)
    for key in ("robot_logits", "card_logits", "mlp_logits", "hidden_states"):
        assert torch.equal(expected[key], got[key]), key


def test_from_pretrained_with_another_fleet_keeps_trained_rows_by_id(tiny, tmp_path, caplog):
    model, processor = tiny
    save_pretrained(model, processor, tmp_path / "model")
    ids = ["snake_robot", "robot_with_legs", "drone", "humanoid"]  # one added, two removed, reordered
    with caplog.at_level(logging.WARNING, logger="ember.model"):
        loaded = EmberVLM.from_pretrained(tmp_path / "model", robot_ids=ids)
    assert loaded.config.robot_ids == ids and loaded.num_robots == 4
    assert ("Fleet differs from the checkpoint's: added ['snake_robot'], removed ['underwater_robot', "
            "'robot_with_wheels']") in caplog.text
    assert "New robot(s) ['snake_robot'] are scored from their capability cards only until trained" in caplog.text
    assert "Skipped" not in caplog.text  # the remapped rows fit: nothing falls back to random init
    saved, new = model.state_dict(), loaded.state_dict()
    for key in ROBOT_ROWS:
        for index, robot in enumerate(ids[1:], start=1):
            assert torch.equal(new[key][index], saved[key][processor.fleet.index(robot)]), (key, robot)
    assert loaded.robot_head.known.tolist() == [False, True, True, True]
    assert torch.equal(new["robot_head.mlp.3.weight"], saved["robot_head.mlp.3.weight"])  # not per robot: as saved


def test_save_and_load_round_trip_gives_identical_outputs(tiny, tmp_path):
    model, processor = tiny
    processor.config.calibration = Calibration(scale=1.7, margin=0.5, bias=-0.25)
    try:
        path = save_pretrained(model, processor, tmp_path / "model")
    finally:
        processor.config.calibration = Calibration()
    assert {p.name for p in path.iterdir()} >= MODEL_FILES | {"fleet.json", "processor_config.json", "tokenizer.json"}
    loaded, loaded_processor = load_pretrained(path)
    assert loaded_processor.fleet.hash == processor.fleet.hash and loaded_processor.config.calibration == Calibration(1.7, 0.5, -0.25)
    inputs = batch(processor, ["Inspect a bridge", "Deliver parcels"])
    with torch.no_grad():
        for key in ("robot_logits", "hidden_states"):
            assert torch.equal(model(**inputs)[key], loaded(**inputs)[key]), key


def test_a_model_and_processor_for_different_fleets_are_not_saved(tiny, tmp_path, write_plugin, write_robots,
                                                                  default_robots_lines):
    model, processor = tiny
    write_plugin("snake_robot", SNAKE_PLUGIN)
    six = load_fleet(write_robots(default_robots_lines + ["  - plugin: snake_robot"]))
    other = EmberProcessor(processor.config, processor.tokenizer, six)
    with pytest.raises(ValueError, match="head is laid out for .*'robot_with_legs'\\], the processor's fleet is"):
        save_pretrained(model, other, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_saving_replaces_a_model_directory_atomically(tiny, tmp_path):
    path = save_pretrained(*tiny, tmp_path / "model")
    (path / "stale.txt").write_text("from an older save")
    save_pretrained(*tiny, path)
    assert not (path / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_failed_save_leaves_the_previous_model_untouched(tiny, tmp_path, monkeypatch):
    model, processor = tiny
    path = save_pretrained(model, processor, tmp_path / "model")
    before = (path / "model.safetensors").read_bytes()

    def disk_full(directory):
        raise OSError("No space left on device")

    monkeypatch.setattr(processor.tokenizer, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_pretrained(model, processor, path)
    assert (path / "model.safetensors").read_bytes() == before and (path / "tokenizer.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_five_robot_checkpoint_loads_into_a_six_robot_fleet(tiny, tmp_path, write_plugin, write_robots,
                                                            default_robots_lines, caplog):
    model, processor = tiny
    path = save_pretrained(model, processor, tmp_path / "model")
    write_plugin("snake_robot", SNAKE_PLUGIN)
    six = load_fleet(write_robots(["  - plugin: snake_robot"] + default_robots_lines))
    with caplog.at_level(logging.WARNING, logger="ember.model"):
        loaded, loaded_processor = load_pretrained(path, fleet=six)
    assert "Fleet differs from the checkpoint's: added ['snake_robot']" in caplog.text
    assert loaded_processor.fleet.ids == loaded.config.robot_ids == six.ids
    assert loaded.robot_head.known.tolist() == [False, True, True, True, True, True]
    inputs = batch(processor, ["Inspect a pipe"], shown=(False,))
    with torch.no_grad():
        old = model(**inputs)["mlp_logits"]
        new = loaded(**inputs)
    assert torch.allclose(new["mlp_logits"][:, 1:], old)
    assert torch.equal(new["robot_logits"][:, 0], new["card_logits"][:, 0])


def test_load_matching_skips_mismatched_tensors_with_the_seed_log_lines(tiny, fleet, caplog):
    model, _ = tiny
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["robot_head.mlp.6.weight"] = torch.zeros(1, 16)
    state["robot_head.mlp.6.bias"] = torch.zeros(1)
    torch.manual_seed(1)
    target, _ = build_model(preset("tiny"), fleet)
    fresh_row = target.robot_head.mlp[6].weight.clone()
    with caplog.at_level(logging.WARNING, logger="ember.model"):
        skipped = load_matching(target, state)
    assert skipped == ["robot_head.mlp.6.weight", "robot_head.mlp.6.bias"]
    assert "Skipped 2 mismatched layer(s) - will be randomly initialized:" in caplog.text
    assert "  - robot_head.mlp.6.weight: checkpoint torch.Size([1, 16]) vs model torch.Size([5, 16])" in caplog.text
    assert torch.equal(target.vision.projector[0].weight, model.vision.projector[0].weight)
    assert torch.equal(target.robot_head.mlp[6].weight, fresh_row)


def test_feeding_after_the_kv_cache_equals_running_the_whole_sequence(tiny):
    """The explanation decoder feeds chunks after the prompt's cache; each hidden state must be the uncached one."""
    model, processor = tiny
    inputs = batch(processor, ["Survey a collapsed parking garage for cracks"], shown=(False,))
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    chunks = [[processor.token_id(REASONING_START), 100, 200], [300], [400, 500]]
    with torch.no_grad():
        cache = model(ids, mask, use_cache=True)["cache"]
        cached = [model.feed(chunk, cache) for chunk in chunks]
        prompt_embeds, fed = model.embed(ids), []
        for index, chunk in enumerate(chunks):
            fed += chunk
            tail = model.language_model.get_input_embeddings()(torch.tensor([fed]))
            hidden = model.language_model(inputs_embeds=torch.cat([prompt_embeds, tail], 1), use_cache=False,
                                          output_hidden_states=True).hidden_states[-1]
            assert torch.allclose(cached[index], hidden[0, -1], atol=1e-5)


def test_token_scores_score_only_the_candidates_with_the_learned_relevance_weight(tiny):
    model, _ = tiny
    hidden = torch.randn(2, model.language_model.config.hidden_size)
    candidates = torch.tensor([[5, 9, 11], [7, 7, 3]])
    weight = model.language_model.get_output_embeddings().weight
    expected = torch.einsum("bh,bkh->bk", model.explanation_adapter(hidden), weight[candidates])
    assert torch.allclose(model.token_scores(hidden, candidates), expected, atol=1e-5)
    with torch.no_grad():
        model.explanation_adapter.relevance_gain.fill_(0.1)
    relevance = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    shifted = model.token_scores(hidden, candidates, relevance)
    assert torch.allclose(shifted - model.token_scores(hidden, candidates), 2.0 * relevance, atol=1e-5)  # 20 x 0.1
    with torch.no_grad():
        model.explanation_adapter.relevance_gain.fill_(0.0)
def test_a_pretrained_lm_directory_brings_its_tokenizer_and_is_resized_for_the_special_tokens(tmp_path, fleet, caplog):
    """A hub-style LM directory (weights + tokenizer without Ember's tokens) becomes the model's LM."""
    from transformers import AutoTokenizer

    from ember_core.model.tokenizer import DEFAULT_TOKENIZER_DIR

    AutoTokenizer.from_pretrained(DEFAULT_TOKENIZER_DIR).save_pretrained(tmp_path / "lm")
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_embd=32, n_layer=1, n_head=2, n_positions=1024))
    lm.save_pretrained(tmp_path / "lm")
    config = preset("tiny", language_model="pretrained", lm_name_or_path=str(tmp_path / "lm"))
    with caplog.at_level(logging.INFO, logger="ember.model"):
        model, processor = build_model(config, fleet)
    assert "Current embedding size: 50257" in caplog.text and "Embedding resize successful: 50262" in caplog.text
    assert len(processor.tokenizer) == 50262
    assert torch.equal(model.language_model.transformer.wte.weight[:50257], lm.transformer.wte.weight)
    out = model.eval()(**batch(processor, ["Inspect a dam"], shown=(True,)))
    assert out["robot_logits"].shape == (1, 5)


def test_default_config_is_the_seeds_size(fleet):
    counts = build_model(EmberVLMConfig(), fleet)[0].parameter_counts()
    assert 30e6 <= counts["total"] <= 45e6, counts
    assert 28e6 <= counts["language_model"] <= 32e6 and 4e6 <= counts["vision"] <= 6e6


def test_scene_head_reads_the_pooled_visual_tokens_and_the_scene_loss_trains_it(fleet):
    from ember_train.losses import stage3_loss

    torch.manual_seed(0)
    model, processor = build_model(preset("tiny", scene_tags=["aerial", "underwater"]), fleet)
    model.eval()
    inputs = batch(processor, ["Inspect a pipeline under the sea", "Carry boxes in a warehouse"])
    assert "scene_logits" not in model(inputs["input_ids"], inputs["attention_mask"])
    out = model(**inputs)
    with torch.no_grad():
        expected = model.scene_head(model.vision(inputs["pixel_values"]).mean(1))
    shown = inputs["has_image"]  # a row without an image has scene logits too, which nothing reads
    assert out["scene_logits"].shape == (2, 2) and torch.allclose(out["scene_logits"][shown], expected[shown], atol=1e-6)
    training = {"targets": torch.zeros(2, 5), "choice_mask": torch.zeros(2, 0, dtype=torch.bool),
                "scene_targets": torch.tensor([[0.0, 1.0], [1.0, 0.0]]), "has_image": inputs["has_image"]}
    losses = stage3_loss(out, training, None, model.token_scores)
    losses["loss"].backward()
    assert model.scene_head.weight.grad.abs().sum() > 0
    assert model.parameter_counts()["scene_head"] == 32 * 2 + 2


# ---- checking what a model directory holds (issue 12) ------------------------------------------

def test_a_config_is_checked_on_construction_with_the_field_named():
    from ember_core.fields import FieldError
    from ember_core.model.config import PRESETS

    assert all(config.robot_ids == [] for config in PRESETS.values())  # built for a fleet later
    for overrides, field in [({"image_size": "64"}, "image_size"), ({"image_size": 48}, "image_size"),
                             ({"lm_layers": -1}, "lm_layers"), ({"lm_heads": 3}, "lm_hidden"),
                             ({"max_reasoning_tokens": 5000}, "max_reasoning_tokens"), ({"lm_context": 10}, "lm_context"),
                             ({"head_dropout": 1.0}, "head_dropout"), ({"lm_dropout": -0.1}, "lm_dropout"),
                             ({"scene_tags": ["moon"]}, "scene_tags"),
                             ({"robot_ids": ["drone", "drone"]}, "robot_ids"), ({"freeze_vision": "no"}, "freeze_vision")]:
        with pytest.raises(FieldError, match=f"^field '{field}': ") as caught:
            preset("tiny", **overrides)
        assert caught.value.field == field
    with pytest.raises(FieldError, match="^field 'robot_ids': expected at least one robot id"):
        EmberVLMConfig.from_dict(preset("tiny").to_dict())


def _saved_weights(tiny, directory, edit) -> None:
    """Save the tiny model into `directory`, then rewrite its weights file with `edit(state)`."""
    from safetensors.torch import load_file

    model, processor = tiny
    save_pretrained(model, processor, directory)
    state = load_file(str(directory / "model.safetensors"))
    edit(state)
    save_file(state, str(directory / "model.safetensors"))


def test_a_checkpoint_missing_a_tensor_is_an_error_naming_it_not_a_random_part(tiny, tmp_path):
    """Before: the missing tensor kept its random initialisation with a log warning."""
    _saved_weights(tiny, tmp_path / "model", lambda state: state.pop("vision.projector.0.weight"))
    with pytest.raises(ValueError, match=r"model.safetensors: lacks 1 of the \d+ tensors config.json's model needs, "
                                         r"e.g. \['vision.projector.0.weight'\]"):
        load_pretrained(tmp_path / "model")


def test_weights_with_nan_are_refused(tiny, tmp_path):
    _saved_weights(tiny, tmp_path / "model", lambda state: state["no_image"].fill_(float("nan")))
    with pytest.raises(ValueError, match="model.safetensors: tensor 'no_image' holds NaN or infinite values"):
        load_pretrained(tmp_path / "model")


def test_robot_rows_that_disagree_with_the_config_are_an_error_not_an_index_error(tiny, tmp_path, fleet):
    """Before: loading such a checkpoint for another fleet raised IndexError inside remap_robot_rows."""
    def three_rows(state):
        for key in ("robot_head.mlp.6.weight", "robot_head.mlp.6.bias", "robot_head.known"):
            state[key] = state[key][:3].contiguous()

    _saved_weights(tiny, tmp_path / "model", three_rows)
    with pytest.raises(ValueError, match=r"model.safetensors: has 3 tensor\(s\) of shapes config.json's model cannot "
                                         r"load, e.g. \['robot_head.known: \[3\], expected \[5\]', 'robot_head.mlp.6.bias: \[3\], "
                                         r"expected \[5\]', 'robot_head.mlp.6.weight: \[3, 16\], expected \[5, 16\]'\]"):
        EmberVLM.from_pretrained(tmp_path / "model", robot_ids=fleet.ids[::-1])


def test_a_resized_vocabulary_still_loads_with_the_seed_log_lines(tiny, tmp_path, caplog):
    """The tolerant path stays for what it is for: embedding rows of another vocabulary are re-initialised."""
    def more_tokens(state):
        wte = state["language_model.transformer.wte.weight"]
        state["language_model.transformer.wte.weight"] = torch.cat([wte, wte[:2]]).contiguous()

    _saved_weights(tiny, tmp_path / "model", more_tokens)
    with caplog.at_level(logging.WARNING, logger="ember.model"):
        model, _ = load_pretrained(tmp_path / "model")
    assert "Skipped 1 mismatched layer(s) - will be randomly initialized:" in caplog.text
    assert "language_model.transformer.wte.weight: checkpoint torch.Size([50264, 32]) vs model" in caplog.text
    assert torch.equal(model.vision.projector[0].weight, tiny[0].vision.projector[0].weight)


def _batchnorm_statistics(model: EmberVLM) -> list[torch.Tensor]:
    return [buffer.clone() for name, buffer in model.vision.named_buffers() if "running_" in name]


def test_blank_pixels_of_rows_without_an_image_stay_out_of_batchnorm_statistics(fleet):
    """A training batch pads image-less rows with zero pixels; only the rows that show an image may move
    BatchNorm's running statistics, exactly as a batch of those images alone does."""
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny"), fleet)
    tasks = ["Inspect a bridge", "Deliver parcels", "Survey a roof", "Carry a box"]
    mixed = batch(processor, tasks, shown=(True, False, True, False))
    shown = batch(processor, [tasks[0], tasks[2]], shown=(True, True))
    assert mixed["pixel_values"][1].abs().sum() == 0 and mixed["has_image"].tolist() == [True, False, True, False]
    start = _batchnorm_statistics(model)
    model.train()(**mixed)
    after_mixed = _batchnorm_statistics(model)
    for buffer, value in zip((b for n, b in model.vision.named_buffers() if "running_" in n), start):
        buffer.copy_(value)
    model(**shown)
    after_shown = _batchnorm_statistics(model)
    assert any(not torch.equal(a, b) for a, b in zip(start, after_shown))  # the statistics did move
    for mixed_value, shown_value in zip(after_mixed, after_shown):
        torch.testing.assert_close(mixed_value, shown_value, rtol=1e-5, atol=1e-6)


def test_a_batch_with_images_in_some_rows_scores_each_row_as_alone(tiny):
    model, processor = tiny
    tasks = ["Inspect a bridge", "Deliver parcels", "Survey a roof"]
    with torch.no_grad():
        together = model(**batch(processor, tasks, shown=(False, True, False)))["robot_logits"]
        alone = [model(**batch(processor, [task], shown=(image,)))["robot_logits"][0]
                 for task, image in zip(tasks, (False, True, False))]
    torch.testing.assert_close(together, torch.stack(alone), rtol=1e-4, atol=1e-5)


def test_under_syncbatchnorm_every_row_goes_through_the_vision_encoder(fleet):
    """SyncBatchNorm's statistics are collectives: a process must run the encoder even on blank rows."""
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny"), fleet)
    rows = []
    hook = model.vision.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
    mixed = batch(processor, ["Inspect a bridge", "Deliver parcels", "Survey a roof"], shown=(True, False, False))
    with torch.no_grad():
        model.eval()(**mixed)
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model).eval()(**mixed)
    hook.remove()
    assert rows == [1, 3]
