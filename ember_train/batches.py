"""Turning TaskRecords into model batches: token ids, LM labels, robot targets and scene pixels."""
from __future__ import annotations

import random
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ember_core.images import to_pixels, to_rgb
from ember_core.model.checkpoint import EmberModel
from ember_core.model.prompt import ACTION_PLAN, REASONING_END, REASONING_START, decision_text, selection_prompt
from ember_train.data import TaskRecord
from ember_train.losses import IGNORE_INDEX
from ember_train.scenes import render_scene, scene_tags
from ember_train.targets import plan_target, reasoning_target


class SelectionDataset(Dataset):
    """One item per record: the prompt (and, with `with_reasoning`, the generated targets to learn).

    Records without an image get the scene rendered from their task text. `image_dropout` hides the
    image of that fraction of items (drawn again each epoch, see `set_epoch`) so the model also
    learns the text-only path that `ember select --task` without `--image` takes.
    """

    def __init__(self, records: Sequence[TaskRecord], bundle: EmberModel, with_reasoning: bool = True,
                 image_dropout: float = 0.0, seed: int = 0, use_images: bool = True):
        self.records = list(records)
        self.bundle = bundle
        self.tokenizer = bundle.tokenizer
        self.fleet = bundle.fleet
        self.image_size = bundle.model.config.image_size
        self.image_tokens = bundle.model.vision.num_tokens
        self.with_reasoning = with_reasoning
        self.image_dropout = image_dropout
        self.use_images = use_images
        self.seed = seed
        self.epoch = 0
        self._scenes: dict[str, torch.Tensor] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        prompt = self.tokenizer(selection_prompt(record.task, self.fleet, self.image_tokens))["input_ids"]
        labels = [IGNORE_INDEX] * len(prompt)
        if self.with_reasoning:
            # The decision and the start marker are fed at inference, not predicted; what follows is learned.
            given = self.tokenizer(decision_text(list(record.robots), self.fleet) + REASONING_START)["input_ids"]
            learned = self.tokenizer(reasoning_target(record.task, record.robots, self.fleet) + REASONING_END
                                     + ACTION_PLAN + plan_target(record.plan, self.fleet) + self.tokenizer.eos_token)["input_ids"]
            labels += [IGNORE_INDEX] * len(given) + learned
            prompt = prompt + given + learned
        targets = torch.zeros(len(self.fleet))
        targets[[self.fleet.index(robot) for robot in record.robots]] = 1.0
        shown = self.use_images and random.Random(f"{self.seed}:{self.epoch}:{index}").random() >= self.image_dropout
        item = {"input_ids": torch.tensor(prompt), "labels": torch.tensor(labels), "targets": targets,
                "pixel_values": self._pixels(record) if shown else torch.zeros(3, self.image_size, self.image_size),
                "has_image": torch.tensor(shown)}
        tags = self.bundle.model.config.scene_tags
        if tags:
            present = scene_tags(record.task)
            item["scene_targets"] = torch.tensor([float(tag in present) for tag in tags])
        task = self.bundle.task_inputs([record.task])
        if task:
            item["task_input_ids"] = task["input_ids"][0]
        return item

    def _pixels(self, record: TaskRecord) -> torch.Tensor:
        key = record.image or record.task
        if key not in self._scenes:
            image = to_rgb(record.image) if record.image else render_scene(record.task, self.image_size)
            self._scenes[key] = to_pixels(image, self.image_size)
        return self._scenes[key]


def collate(items: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token ids (pad id) and labels (ignored) to the longest item; stack the rest."""
    length = max(item["input_ids"].numel() for item in items)
    batch = {
        "input_ids": torch.full((len(items), length), pad_id, dtype=torch.long),
        "labels": torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long),
        "attention_mask": torch.zeros((len(items), length), dtype=torch.long),
    }
    for row, item in enumerate(items):
        size = item["input_ids"].numel()
        batch["input_ids"][row, :size] = item["input_ids"]
        batch["labels"][row, :size] = item["labels"]
        batch["attention_mask"][row, :size] = 1
    for key in ("targets", "pixel_values", "has_image", "scene_targets"):
        if key in items[0]:
            batch[key] = torch.stack([item[key] for item in items])
    if "task_input_ids" in items[0]:
        # Sentence-encoder ids pad with 0, the [PAD] id of BERT-style tokenizers; the mask hides them.
        task_length = max(item["task_input_ids"].numel() for item in items)
        batch["task_input_ids"] = torch.zeros((len(items), task_length), dtype=torch.long)
        batch["task_attention_mask"] = torch.zeros((len(items), task_length), dtype=torch.long)
        for row, item in enumerate(items):
            size = item["task_input_ids"].numel()
            batch["task_input_ids"][row, :size] = item["task_input_ids"]
            batch["task_attention_mask"][row, :size] = 1
    return batch


MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "has_image", "task_input_ids", "task_attention_mask")


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch entries EmberVLM.forward takes, on `device`."""
    return {key: batch[key].to(device) for key in MODEL_INPUTS if key in batch}
