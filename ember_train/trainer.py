"""The training loop every stage runs: DDP, gradient accumulation, autocast, the schedule, logs, evaluation, checkpoints.

A stage (`ember_train.stage.Stage`) brings the model, its training data, its objective (a module whose
forward takes a batch and returns the loss and its parts) and what evaluating and finishing mean for
it. Every rank runs all of this on its shard of the data; only rank 0 logs, plots, writes W&B and
saves checkpoints, and every rank joins each collective (the loss average, evaluation, the final
check that the replicas agree).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ember_train.checkpointing import save_checkpoint
from ember_train.distributed import (accumulation_step, all_reduce_sum, autocast, make_sampler, max_weight_difference,
                                     total_updates, wrap_model)
from ember_train.parts import PartPlan, apply_parts, log_parts, part_multipliers
from ember_train.stage import Stage
from ember_train.tracking import Tracker

log = logging.getLogger("ember.train")


class Trainer:
    """Trains one stage: `train()` runs its epochs and returns the stage's summary.

    `step` counts batches (per process), `history` holds the training loss of every step (averaged
    over the ranks) and what the stage's evaluations add, `tracker` the W&B run (a no-op off rank 0).
    """

    def __init__(self, stage: Stage):
        self.stage, self.args, self.ctx = stage, stage.args, stage.ctx
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.tracker = Tracker("disabled", stage.stage_dir, stage.run_name, {})  # a no-op until `train` opens the run

    def train(self) -> dict[str, Any]:
        stage, args, ctx = self.stage, self.args, self.ctx
        epochs = args.epochs(stage.number)
        groups, plans = apply_parts(stage.model, part_multipliers(stage.number, args.part_lr(stage.number)),
                                    args.learning_rate, args.weight_decay)
        groups, plans = _with_objective_parameters(stage, groups, plans, args.learning_rate)
        log_parts(stage.number, plans, args.learning_rate)
        if args.gradient_checkpointing:
            stage.model.language_model.activation_checkpointing_enable({"use_reentrant": False})
        # Some batches leave a trainable part unused (no image in a batch: no vision), so DDP must look for them.
        model = wrap_model(stage.objective, ctx, find_unused_parameters=True)
        sampler = make_sampler(stage.train_data, ctx, shuffle=True, seed=args.seed)
        loader = DataLoader(stage.train_data, batch_size=args.batch_size, sampler=sampler, collate_fn=stage.collate,
                            num_workers=args.num_workers)
        optimizer = torch.optim.AdamW(groups)
        updates = total_updates(len(stage.train_data), args.batch_size, args.gradient_accumulation, ctx.world_size, epochs)
        schedule = partial(warmup_cosine, total=updates, warmup=int(updates * args.warmup_ratio))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        log.info("%d samples, %d process(es) x batch %d x accumulation %d: %d optimizer updates over %d epoch(s)",
                 len(stage.train_data), ctx.world_size, args.batch_size, args.gradient_accumulation, updates, epochs)
        self.tracker = Tracker(args.wandb if ctx.is_main else "disabled", Path(args.output_dir), stage.run_name,
                               asdict(args))
        state = {"stage": stage.number, "epoch": 0, "wandb_run_id": self.tracker.run_id, "args": asdict(args)}
        try:
            for epoch in range(epochs):
                state["epoch"] = epoch
                sampler.set_epoch(epoch)
                stage.set_epoch(epoch)
                self._train_epoch(epoch, model, loader, optimizer, scheduler, schedule, state)
                stage.evaluate(self, epoch, end_of_epoch=True)
                if self._at_max_steps():
                    break
            self._save(optimizer, scheduler, state)
            self._check_replicas()
            return stage.finish(self)
        finally:
            self.tracker.finish()

    def _train_epoch(self, epoch: int, model: torch.nn.Module, loader: DataLoader, optimizer, scheduler, schedule,
                     state: dict) -> None:
        args, ctx = self.args, self.ctx
        model.train()
        bar = tqdm(loader, desc=f"{self.stage.progress_name} Epoch {epoch}", dynamic_ncols=True, disable=not ctx.is_main)
        for index, batch in enumerate(bar):
            started = time.perf_counter()
            batch = {key: value.to(ctx.device) for key, value in batch.items()}
            last = (index + 1) % args.gradient_accumulation == 0 or index + 1 == len(loader)
            with accumulation_step(model, last):
                with autocast(ctx, args.mixed_precision):
                    losses = model(batch)
                (losses["loss"] / args.gradient_accumulation).backward()
            if last:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            self.step += 1
            # The loss is averaged over the ranks (its parts, which a batch may lack, are this rank's).
            loss = all_reduce_sum(losses["loss"].detach().float(), ctx).item() / ctx.world_size
            seconds = time.perf_counter() - started
            self.history.append({"step": self.step, "loss": loss})
            if self.step % args.log_steps == 0:
                scalars = {key: value.item() for key, value in losses.items()} | {"loss": loss}
                scalars.update(learning_rate=args.learning_rate * schedule(scheduler.last_epoch), step_time=seconds,
                               samples_per_second=batch["input_ids"].shape[0] * ctx.world_size / seconds)
                self.tracker.log({f"{self.stage.prefix}/{key}": value for key, value in scalars.items()}, self.step)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{scalars['learning_rate']:.2e}",
                                samples_s=f"{scalars['samples_per_second']:.1f}")
            if self.step % args.eval_steps == 0:
                self.stage.evaluate(self, epoch, end_of_epoch=False)
                model.train()
            if self.step % args.save_steps == 0:
                self._save(optimizer, scheduler, state)
            if self._at_max_steps():
                break

    def _at_max_steps(self) -> bool:
        return bool(self.args.max_steps) and self.step >= self.args.max_steps

    def _save(self, optimizer, scheduler, state: dict) -> None:
        """The one place checkpoints are written: by rank 0, atomically, `latest` moved last."""
        if self.ctx.is_main:
            save_checkpoint(self.stage.model, self.stage.processor, self.stage.stage_dir, self.step, optimizer,
                            scheduler, state)

    def _check_replicas(self) -> None:
        """Every rank must end with the same weights; a difference means gradients were not synchronised."""
        if not self.ctx.distributed:
            return
        difference = max_weight_difference(self.stage.objective, self.ctx)
        if difference == 0:
            log.info("Weights identical on all %d ranks after %d steps", self.ctx.world_size, self.step)
        else:
            log.warning("Weights differ between ranks by up to %g after %d steps: the gradients were not synchronised",
                        difference, self.step)


def warmup_cosine(update: int, total: int, warmup: int) -> float:
    """The learning-rate factor after `update` optimizer updates: linear warm-up over `warmup`, then cosine to 0 at `total`."""
    if update < warmup:
        return (update + 1) / (warmup + 1)
    progress = (update - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _with_objective_parameters(stage: Stage, groups: list[dict], plans: list[PartPlan],
                               learning_rate: float) -> tuple[list[dict], list[PartPlan]]:
    """Add the objective's own parameters (Stage 1's contrastive temperature), trained at the base rate, no decay."""
    own = {id(p) for p in stage.model.parameters()}
    extra = [p for p in stage.objective.parameters() if id(p) not in own]
    if not extra:
        return groups, plans
    count = sum(p.numel() for p in extra)
    return (groups + [{"params": extra, "lr": learning_rate, "weight_decay": 0.0, "name": "loss"}],
            plans + [PartPlan("loss", 1.0, count, count)])
