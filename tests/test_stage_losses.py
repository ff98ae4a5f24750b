"""Stage 1 and 2 losses on small tensors, and on the tiny model fed the Stage 1 and Stage 2 batches."""
from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F

from ember_core.model.config import preset
from ember_core.pretrained import build_model
from ember_train.image_text import IGNORE_INDEX
from ember_train.stage1_data import Stage1Dataset, build_stage1_index, collate_stage1
from ember_train.stage1_sources import CaptionJsonl
from ember_train.stage2_data import Stage2Dataset, build_stage2_index, collate_stage2
from ember_train.stage_losses import INITIAL_TEMPERATURE, ContrastiveLoss, masked_mean, next_token_loss
from image_files import write_image


def test_matching_pairs_cost_less_than_shuffled_ones_and_the_temperature_learns():
    torch.manual_seed(0)
    image = torch.randn(8, 16)
    text = image + 0.1 * torch.randn(8, 16)
    loss = ContrastiveLoss()
    assert math.isclose(loss.temperature.item(), INITIAL_TEMPERATURE, rel_tol=1e-6)
    aligned, shuffled = loss(image, text), loss(image, text.roll(1, dims=0))
    assert aligned < 0.1 < math.log(8) < shuffled
    assert torch.allclose(loss(text, image), aligned, atol=1e-5)  # symmetric
    aligned.backward()
    assert loss.log_temperature.grad is not None and loss.log_temperature.grad != 0
    assert [name for name, _ in loss.named_parameters()] == ["log_temperature"]


def test_next_token_loss_scores_the_next_label_and_skips_ignored_positions():
    logits = torch.full((1, 4, 5), -10.0)
    logits[0, 0, 3] = logits[0, 1, 2] = 10.0  # position t predicts token t + 1
    labels = torch.tensor([[IGNORE_INDEX, 3, 2, IGNORE_INDEX]])
    assert next_token_loss(logits, labels) < 1e-3
    assert next_token_loss(logits, torch.tensor([[IGNORE_INDEX, 2, 3, IGNORE_INDEX]])) > 10
    expected = F.cross_entropy(logits[0, :2], torch.tensor([3, 2]))
    assert torch.allclose(next_token_loss(logits, labels), expected)


def test_masked_mean_averages_only_the_unmasked_positions():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0]]


def test_the_tiny_model_trains_on_stage1_and_stage2_batches(tmp_path, fleet):
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny"), fleet)
    write_image(tmp_path / "red.png", (200, 30, 30))
    write_image(tmp_path / "blue.jpg", (30, 30, 200))
    (tmp_path / "pairs.jsonl").write_text('{"image": "red.png", "text": "a red square"}\n'
                                          '{"image": "blue.jpg", "text": "blue"}\n', encoding="utf-8")
    stage1 = Stage1Dataset(build_stage1_index([CaptionJsonl(tmp_path / "pairs.jsonl")]), processor, max_tokens=32)
    batch = collate_stage1([stage1[0], stage1[1]], processor)
    contrastive = ContrastiveLoss()
    visual = model.vision(batch["pixel_values"])
    logits = model.language_model(inputs_embeds=model.embed(batch["input_ids"], visual, batch["has_image"]),
                                  attention_mask=batch["attention_mask"]).logits
    text = model.language_model(input_ids=batch["caption_input_ids"], attention_mask=batch["caption_attention_mask"],
                                output_hidden_states=True).hidden_states[-1]
    loss = next_token_loss(logits, batch["labels"]) + contrastive(
        visual.mean(1), masked_mean(text, batch["caption_attention_mask"]))
    loss.backward()
    assert torch.isfinite(loss) and contrastive.log_temperature.grad is not None
    assert model.vision.projector[0].weight.grad is not None

    (tmp_path / "chat.json").write_text(json.dumps([
        {"id": "1", "image": "red.png", "conversations": [{"from": "human", "value": "<image>\nColour?"},
                                                          {"from": "gpt", "value": "Red."}]},
        {"id": "2", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]}]))
    stage2 = Stage2Dataset(build_stage2_index(tmp_path / "chat.json"), processor, max_tokens=32)
    batch = collate_stage2([stage2[0], stage2[1]], processor)
    logits = model.language_model(inputs_embeds=model.embed(batch["input_ids"], model.vision(batch["pixel_values"]),
                                                            batch["has_image"]),
                                  attention_mask=batch["attention_mask"]).logits
    assert torch.isfinite(next_token_loss(logits, batch["labels"]))
