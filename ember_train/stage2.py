"""Stage 2, instruction tuning: next-token loss on the assistant's turns of LLaVA-Instruct conversations."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ember_core.model.vlm import EmberVLM
from ember_train.language_stage import LanguageStage, lm_logits
from ember_train.stage2_data import ConversationItem, Stage2Dataset, Stage2Index, build_stage2_index, collate_stage2
from ember_train.stage_losses import next_token_loss, target_tokens


class InstructionObjective(nn.Module):
    """Stage 2's loss on a batch: next-token loss on the answers' tokens (a batch without images skips the vision
    encoder)."""

    terms = ("answer",)

    def __init__(self, model: EmberVLM):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pixels = batch.get("pixel_values")
        visual = self.model.visual_tokens(pixels, batch.get("has_image")) if pixels is not None else None
        answer = next_token_loss(lm_logits(self.model, batch, visual), batch["labels"], reduction="sum")
        return {"loss": answer / self.counts(batch)["answer"].clamp(min=1), "sums": {"answer": answer}}

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"answer": target_tokens(batch["labels"])}


class InstructionStage(LanguageStage):
    """Stage 2: the conversations of `--stage2_data`, their images under `--stage2_image_root`."""

    number = 2
    title = "Instruction Tuning"
    progress_name = "Instruction"
    run_name = "stage2_instruction"
    data_flag = "stage2_data"
    data_help = "a LLaVA-Instruct JSON file or a folder of them"
    index_type = Stage2Index

    def build_index(self) -> Stage2Index:
        return build_stage2_index(self.args.stage2_data, self.args.stage2_image_root)

    def dataset_of(self, index: Stage2Index) -> tuple[Stage2Dataset, list[str]]:
        # A text-only conversation is its own group.
        return (Stage2Dataset(index, self.processor, self.model.config.lm_context),
                [conversation.image or conversation.id for conversation in index.conversations])

    def make_objective(self) -> InstructionObjective:
        return InstructionObjective(self.model)

    def collate(self, items: Sequence[ConversationItem]) -> dict[str, torch.Tensor]:
        return collate_stage2(items, self.processor)
