"""Stage 1, vision-language alignment: image-text contrastive loss plus captioning, on COCO, VQA v2 and JSONL pairs."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ember_core.model.vlm import EmberVLM
from ember_train.language_stage import LanguageStage, lm_logits
from ember_train.stage1_data import CaptionItem, Stage1Dataset, Stage1Index, build_stage1_index, collate_stage1
from ember_train.stage1_sources import find_stage1_sources
from ember_train.stage_losses import ContrastiveLoss, masked_mean, next_token_loss, target_tokens


class AlignmentObjective(nn.Module):
    """Stage 1's loss on a batch: the caption's next-token loss after the image (a mean over the caption tokens),
    plus the symmetric contrastive loss between the mean visual token and the caption's mean hidden state (a mean
    over the pairs, its negatives the rank's batch; its temperature is learned)."""

    terms = ("captioning", "contrastive")

    def __init__(self, model: EmberVLM):
        super().__init__()
        self.model = model
        self.contrastive = ContrastiveLoss()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        visual = self.model.vision(batch["pixel_values"])
        counts = self.counts(batch)
        captioning = next_token_loss(lm_logits(self.model, batch, visual), batch["labels"], reduction="sum")
        text = self.model.language_model(input_ids=batch["caption_input_ids"],
                                         attention_mask=batch["caption_attention_mask"],
                                         output_hidden_states=True).hidden_states[-1]
        contrastive = self.contrastive(visual.mean(1), masked_mean(text, batch["caption_attention_mask"]))
        captioning_mean = captioning / counts["captioning"].clamp(min=1)
        return {"loss": captioning_mean + contrastive, "captioning_loss": captioning_mean.detach(),
                "contrastive_loss": contrastive.detach(), "temperature": self.contrastive.temperature.detach(),
                "sums": {"captioning": captioning, "contrastive": contrastive * counts["contrastive"]}}

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pixels = batch["pixel_values"]
        return {"captioning": target_tokens(batch["labels"]), "contrastive": pixels.new_tensor(float(pixels.shape[0]))}


class AlignmentStage(LanguageStage):
    """Stage 1: the image-text pairs of the sources found in `--stage1_data`, under the design's caps."""

    number = 1
    title = "Vision-Language Alignment"
    progress_name = "Alignment"
    run_name = "stage1_alignment"
    data_flag = "stage1_data"
    data_help = "a folder of COCO captions, VQA v2 or JSONL image-text files, or one .jsonl file"
    index_type = Stage1Index

    def build_index(self) -> Stage1Index:
        return build_stage1_index(find_stage1_sources(self.args.stage1_data), seed=self.args.seed)

    def dataset_of(self, index: Stage1Index) -> tuple[Stage1Dataset, list[str]]:
        return (Stage1Dataset(index, self.processor, self.model.config.lm_context),
                [sample.image for sample in index.samples])

    def make_objective(self) -> AlignmentObjective:
        return AlignmentObjective(self.model)

    def collate(self, items: Sequence[CaptionItem]) -> dict[str, torch.Tensor]:
        return collate_stage1(items, self.processor)
