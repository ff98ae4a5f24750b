"""What Stages 1 and 2 share: an index built once, a validation set held out by image, its loss computed in
shards over the ranks, the language model's logits over a batch, and the stage's end (skipped samples
counted over every rank, the loss curves, `best/`: the weights of the lowest validation loss)."""
from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn
from torch.utils.data import Subset

from ember_core.model.vlm import EmberVLM
from ember_core.pretrained import save_pretrained
from ember_train.args import TrainArgs
from ember_train.checkpointing import checkpoint_dir
from ember_train.data import DataError
from ember_train.distributed import DistributedContext, all_reduce_max, all_reduce_sum, autocast, shard_indices
from ember_train.image_text import UnusableSamples, shared_index
from ember_train.plots import plot_losses
from ember_train.stage import Stage
from ember_train.update_loss import mean_loss, term_vector

if TYPE_CHECKING:
    from ember_train.trainer import Trainer

log = logging.getLogger("ember.train")

# The validation set: this fraction of the samples, at most this many.
VAL_FRACTION = 0.05
VAL_CAP = 1000


def hold_out(keys: Sequence[str], seed: int) -> tuple[list[int], list[int]]:
    """The indices of the training and the validation samples.

    Samples that share a key (an image's captions) stay together; whole groups, in a seeded order, go to
    validation until it holds VAL_FRACTION of the samples (at most VAL_CAP, at least one group when
    there are two or more), so no image is both trained on and validated on.
    """
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    wanted = min(VAL_CAP, max(1, round(len(keys) * VAL_FRACTION))) if len(groups) > 1 else 0
    val: list[int] = []
    for key in order:
        if len(val) >= wanted:
            break
        val += groups[key]
    held = set(val)
    return [index for index in range(len(keys)) if index not in held], sorted(val)


def lm_logits(model: EmberVLM, batch: dict[str, torch.Tensor], visual: torch.Tensor | None) -> torch.Tensor:
    """The language model's logits (B, L, V) over a batch's tokens, the image slots holding `visual` (B, K, H)
    where `has_image` is set and the learned no-image vector elsewhere."""
    embeds = model.embed(batch["input_ids"], visual, batch.get("has_image"))
    return model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits


class LanguageStage(Stage):
    """A stage trained on image-text samples indexed from the files `--{data_flag}` names.

    A subclass sets `data_flag` and `data_help` (what the flag must name), `index_type` (with
    `load(path)`), and implements `build_index`, `dataset_of` (a dataset of the index that counts the
    samples it skips in `unusable`, and the key of each sample that `hold_out` groups by: its image)
    and `make_objective`. Rank 0 builds the index and writes it into the stage's folder; the other
    ranks read it after a barrier.
    """

    data_flag: str
    data_help: str
    index_type: Any
    best_metric = "loss"
    higher_is_better = False

    def __init__(self, args: TrainArgs, ctx: DistributedContext, init_from: str | None):
        if not getattr(args, self.data_flag):
            raise DataError(f"Stage {self.number} needs --{self.data_flag}: {self.data_help}")
        super().__init__(args, ctx, init_from)
        index = shared_index(self.stage_dir / f"stage{self.number}_index.json", self.build_index, self.index_type.load,
                             is_main=ctx.is_main, barrier=ctx.barrier)
        self.dataset, keys = self.dataset_of(index)
        self.unusable: UnusableSamples = self.dataset.unusable
        train, self.val_indices = hold_out(keys, args.seed)
        self.train_data = Subset(self.dataset, train)
        log.info("%d samples: %d to train on, %d held out for validation", len(keys), len(train), len(self.val_indices))
        self.objective = self.make_objective()

    def build_index(self) -> Any:
        raise NotImplementedError

    def dataset_of(self, index: Any) -> tuple[Any, list[str]]:
        raise NotImplementedError

    def make_objective(self) -> nn.Module:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, epoch: int, end_of_epoch: bool) -> None:
        """The loss over the validation samples, each rank taking its shard: as in training, each term's summed
        loss over its items in the whole set (`ember_train.update_loss`)."""
        if not self.val_indices:
            return
        ctx, batch_size, terms = self.ctx, self.args.batch_size, self.objective.terms
        shard = [self.val_indices[i] for i in shard_indices(len(self.val_indices), ctx)]
        self.objective.eval()
        total = torch.zeros(2 * len(terms), device=ctx.device)  # each term's summed loss, then its items
        for start in range(0, len(shard), batch_size):
            items = [self.dataset[index] for index in shard[start:start + batch_size]]
            batch = {key: value.to(ctx.device) for key, value in self.collate(items).items()}
            with autocast(ctx, self.args.mixed_precision):
                sums = self.objective(batch)["sums"]
            total += term_vector(sums, self.objective.counts(batch), terms)
        val_loss = mean_loss(all_reduce_sum(total, ctx), terms)
        log.info("Validation loss (Epoch %d, Step %d, %d samples): %.4f", epoch, trainer.step, len(self.val_indices),
                 val_loss)
        trainer.history.append({"step": trainer.step, "val_loss": val_loss})
        trainer.record("val", {"loss": val_loss})

    def finish(self, trainer: Trainer) -> dict[str, Any]:
        """The samples skipped on every rank, the loss curves, `best/`; the summary names the final checkpoint."""
        self.unusable.merge(lambda marks: all_reduce_max(marks.to(self.ctx.device), self.ctx).cpu())
        log.info("%s: %s", self.title, self.unusable.summary())
        best_dir = self.stage_dir / "best"
        if self.ctx.is_main:
            plot_losses(trainer.history, self.stage_dir / "visualizations" / "training_curves.png",
                        f"Stage {self.number} ({self.title}): training loss, validation loss "
                        f"(val split, {len(self.val_indices)} samples)")
            trainer.restore_best()
            save_pretrained(self.model, self.processor, best_dir)
        return {"checkpoint": str(checkpoint_dir(self.stage_dir, trainer.step)), "best_dir": str(best_dir),
                "skipped": self.unusable.counts()}
