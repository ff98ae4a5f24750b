"""What every training stage shares: the fleet, the model it starts from (a checkpoint or a new preset model)
with the embedding check, and the hooks the training loop (`ember_train.trainer`) calls."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from ember_core.model.config import preset
from ember_core.pretrained import build_model, load_pretrained
from ember_core.robots_file import load_fleet
from ember_train.args import TrainArgs
from ember_train.distributed import DistributedContext
from ember_train.rng import seed_all

if TYPE_CHECKING:
    from ember_train.trainer import Trainer

log = logging.getLogger("ember.train")


class Stage:
    """One stage of training. A subclass sets `number`, `title` (the banner), `progress_name` (the progress
    bar's label), `run_name` (the W&B run's name) and `best_metric` with `higher_is_better` (the
    validation metric that picks `best/`), and in its __init__, after this one, `objective` and `train_data`; it
    implements `collate`, `evaluate` and `finish`.

    The objective is an nn.Module holding `model`. It names the terms of its loss in `terms`; its forward(batch)
    returns {"loss": the batch's mean loss, ...parts, "sums": each term's summed loss over its items}, and its
    `counts(batch)` gives each term's items (tasks, decision points, target tokens), so that the trainer can
    divide by the items of a whole update (`ember_train.update_loss`).

    `init_from` is the model or checkpoint directory to warm-start from (None: a new `--model_config`
    model). Either way the language model's embeddings are checked against the tokenizer (and resized
    if they are short) as the model is built, before the stage trains ("✓ Embedding size matches tokenizer").
    """

    number: int
    title: str
    progress_name: str
    run_name: str
    best_metric: str
    higher_is_better: bool
    objective: nn.Module
    train_data: Dataset

    def __init__(self, args: TrainArgs, ctx: DistributedContext, init_from: str | None):
        self.args, self.ctx = args, ctx
        self.stage_dir = Path(args.output_dir) / f"stage{self.number}"
        seed_all(args.seed)  # the same on every rank: the model is built alike everywhere
        self.fleet = load_fleet(args.robots)
        log.info("=" * 60)
        log.info("Stage %d: %s", self.number, self.title)
        log.info("=" * 60)
        if init_from:
            log.info("Loading model from checkpoint: %s", init_from)
            self.model, self.processor = load_pretrained(init_from, fleet=self.fleet)
        else:
            log.info("Building a new %s model", args.model_config)
            self.model, self.processor = build_model(preset(args.model_config), self.fleet)
        self.model.to(ctx.device)

    def set_epoch(self, epoch: int) -> None:
        """Called before each epoch (a dataset that draws per epoch, e.g. Stage 3's image dropout, hears of it here)."""

    def collate(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def with_images(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`batch` with pixels even when none of its rows has an image: blank ones, marked by `has_image` False, so
        the model takes its no-image path for every row (the loss is unchanged) and yet runs the vision encoder.

        Under SyncBatchNorm the trainer passes every batch through here: there the vision encoder's statistics
        and gradients are collectives, and a rank whose batch skipped the encoder would leave the others waiting.
        """
        if "pixel_values" in batch:
            return batch
        rows, size = batch["input_ids"].shape[0], self.processor.config.image_size
        return batch | {"pixel_values": torch.zeros(rows, 3, size, size),
                        "has_image": torch.zeros(rows, dtype=torch.bool)}

    def evaluate(self, trainer: Trainer, epoch: int, end_of_epoch: bool) -> None:
        """Evaluate on validation (every rank takes part): `trainer.record` the metrics, add what the plots
        need to `trainer.history`."""
        raise NotImplementedError

    def finish(self, trainer: Trainer) -> dict[str, Any]:
        """After the last epoch and the final checkpoint: the stage's summary (what `ember train` prints)."""
        raise NotImplementedError
