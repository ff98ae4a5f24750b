"""Turning TaskRecords into training batches: the processor's features plus robot and scene targets."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from ember_core.model.structured import Relevance, StructuredDecoder, no_relevance
from ember_core.processor import EmberProcessor, Features
from ember_core.scenes import render_scene, scene_tags
from ember_train.data import TaskRecord, robot_targets
from ember_train.targets import target_choice, target_context

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "has_image", "task_input_ids", "task_attention_mask")


@dataclass
class TrainingItem:
    """One record as the trainer sees it: model features, the gold robots (N,), the scene tags (S,) if learned."""

    features: Features
    targets: torch.Tensor
    scene_targets: torch.Tensor | None = None


class SelectionDataset(Dataset):
    """One item per record: the prompt (and, with `with_reasoning`, the explanation target to learn).

    Records without an image get the scene rendered from their task text. `image_dropout` hides the
    image of that fraction of items (drawn again each epoch, see `set_epoch`) so the model also
    learns the text-only path that `ember select --task` without `--image` takes. `scene_tags` are
    the tags of the model's scene head (targets from the task text), empty without one. `relevance`
    gives, for a task, the relevance of card phrases to it (`ember_core.relevance`; default all 0).
    """

    def __init__(self, records: Sequence[TaskRecord], processor: EmberProcessor, scene_tags: Sequence[str] = (),
                 with_reasoning: bool = True, image_dropout: float = 0.0, seed: int = 0, use_images: bool = True,
                 relevance: Callable[[str], Relevance] | None = None):
        self.records = list(records)
        self.processor = processor
        self.scene_tags = tuple(scene_tags)
        self.with_reasoning = with_reasoning
        self.image_dropout = image_dropout
        self.use_images = use_images
        self.seed = seed
        self.epoch = 0
        self._pixels: dict[str, torch.Tensor] = {}
        self.decoder = StructuredDecoder(processor.tokenizer, max_tokens=0)  # teacher forcing only: never caps
        self.relevance = relevance

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> TrainingItem:
        record = self.records[index]
        fleet = self.processor.fleet
        shown = self.use_images and random.Random(f"{self.seed}:{self.epoch}:{index}").random() >= self.image_dropout
        features = self.processor.features(record.task, self._scene_pixels(record) if shown else None)
        if self.with_reasoning:
            # What the scene head is taught to see in the rendered scene (None: trained without the image).
            scene = tuple(tag for tag in self.scene_tags if tag in scene_tags(record.task)) if shown else None
            context = target_context(record.task, record.robots, fleet, scene, self.seed)
            relevance = self.relevance(record.task) if self.relevance else no_relevance
            walk = self.decoder.teacher_forced(context, self.processor.decision_ids(record.robots),
                                               lambda slot: target_choice(slot, record.task), relevance)
            features = self.processor.with_explanation(features, walk)
        item = TrainingItem(features, torch.from_numpy(robot_targets([record], fleet)[0]).float())
        if self.scene_tags:
            present = scene_tags(record.task)
            item.scene_targets = torch.tensor([float(tag in present) for tag in self.scene_tags])
        return item

    def _scene_pixels(self, record: TaskRecord) -> torch.Tensor:
        key = record.image or record.task
        if key not in self._pixels:
            size = self.processor.config.image_size
            self._pixels[key] = self.processor.pixels(record.image or render_scene(record.task, size))
        return self._pixels[key]


def collate(items: list[TrainingItem], processor: EmberProcessor) -> dict[str, torch.Tensor]:
    """The processor's batch of the items' features, with their stacked robot (and scene) targets."""
    batch = processor.collate([item.features for item in items])
    batch["targets"] = torch.stack([item.targets for item in items])
    if items[0].scene_targets is not None:
        batch["scene_targets"] = torch.stack([item.scene_targets for item in items])
    return batch


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch entries EmberVLM.forward takes, on `device`."""
    return {key: batch[key].to(device) for key in MODEL_INPUTS if key in batch}
