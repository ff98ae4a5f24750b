"""The training loop every stage runs: DDP, gradient accumulation, autocast, the schedule, logs, evaluation, checkpoints.

A stage (`ember_train.stage.Stage`) brings the model, its training data, its objective (a module whose
forward takes a batch and returns the loss and its parts) and what evaluating and finishing mean for
it. Every rank runs all of this on its shard of the data; only rank 0 logs, plots, writes W&B and
saves checkpoints, and every rank joins each collective (the loss average, evaluation, the final
check that the replicas agree).

The stage's directory (`<output_dir>/stage{N}/`) gets `args.yaml` at the start, a row of
`results.csv` per evaluation, `checkpoint-{step}/` every `save_steps` and at the end (`latest` names
the newest; `--resume` continues from one exactly), and `last/`, the model as training ended; the
stage writes `best/`.
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

from ember_train.checkpointing import TrainingState, load_training_state, prune_checkpoints, save_checkpoint
from ember_train.distributed import (accumulation_step, all_reduce_sum, autocast, gather_objects, make_sampler,
                                     max_weight_difference, syncs_batchnorm, total_updates, wrap_model)
from ember_core.pretrained import save_pretrained
from ember_train.parts import PartPlan, apply_parts, log_parts, part_multipliers
from ember_train.rng import restore_rng_state, rng_state, seed_all
from ember_train.run_files import RESULTS_FILE, ResultsTable, write_args
from ember_train.stage import Stage
from ember_train.tracking import Tracker
from ember_train.update_loss import mean_loss, term_vector, update_loss, update_totals

log = logging.getLogger("ember.train")


class Trainer:
    """Trains one stage: `train()` runs its epochs and returns the stage's summary.

    `step` counts batches (per process), `epoch` is the current epoch, `history` holds the training loss of every
    step (over the step's items on all ranks) and what the stage's evaluations add, `tracker` the W&B run (a
    no-op off rank 0), `best_state` the weights of the best validation score so far (by the stage's `best_metric`).
    """

    def __init__(self, stage: Stage, resume_from: Path | None = None):
        """`resume_from`: a checkpoint of this stage to continue from (the stage's model was loaded from it)."""
        self.stage, self.args, self.ctx = stage, stage.args, stage.ctx
        self.resume_from = resume_from
        self.pending_rng: TrainingState | None = None  # restored once the resumed epoch has skipped its batches
        self.sync_batchnorm = False
        self.step = 0
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.results = ResultsTable(stage.stage_dir / RESULTS_FILE)
        self.best_score: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
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
        self.sync_batchnorm = syncs_batchnorm(stage.objective, ctx)
        model = wrap_model(stage.objective, ctx, find_unused_parameters=True, sync_batchnorm=self.sync_batchnorm)
        seed_all(args.seed, ctx.rank)  # the replicas start alike; from here each rank draws its own dropout masks
        sampler = make_sampler(stage.train_data, ctx, shuffle=True, seed=args.seed)
        loader = DataLoader(stage.train_data, batch_size=args.batch_size, sampler=sampler, collate_fn=stage.collate,
                            num_workers=args.num_workers)
        optimizer = torch.optim.AdamW(groups)
        updates = total_updates(len(stage.train_data), args.batch_size, args.gradient_accumulation, ctx.world_size, epochs)
        schedule = partial(warmup_cosine, total=updates, warmup=int(updates * args.warmup_ratio))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        log.info("%d samples, %d process(es) x batch %d x accumulation %d: %d optimizer updates over %d epoch(s)",
                 len(stage.train_data), ctx.world_size, args.batch_size, args.gradient_accumulation, updates, epochs)
        if ctx.is_main:
            write_args(stage.stage_dir, args)
        training = self._resume(optimizer, scheduler) if self.resume_from else None
        start_epoch, skip = (training.state["epoch"], training.state["batch"]) if training else (0, 0)
        self.tracker = Tracker(args.wandb if ctx.is_main else "disabled", Path(args.output_dir), stage.run_name,
                               asdict(args), run_id=training.state["wandb_run_id"] if training else None)
        self.optimizer, self.scheduler = optimizer, scheduler
        done = start_epoch  # epochs finished: where a resume from the final checkpoint would start
        try:
            for epoch in range(start_epoch, epochs):
                if self._at_max_steps():
                    break
                self.epoch = epoch
                sampler.set_epoch(epoch)
                stage.set_epoch(epoch)
                self._train_epoch(epoch, model, loader, schedule, skip if epoch == start_epoch else 0)
                stage.evaluate(self, epoch, end_of_epoch=True)
                done = epoch + 1
            if self.pending_rng:  # resumed from a stage's final checkpoint: no batch was left
                self._restore_rng()
            self._save(done, 0, accumulating=False)
            if ctx.is_main:
                save_pretrained(stage.model, stage.processor, stage.stage_dir / "last")
            self._check_replicas()
            return stage.finish(self)
        finally:
            self.tracker.finish()

    def _train_epoch(self, epoch: int, model: torch.nn.Module, loader: DataLoader, schedule, skip: int) -> None:
        """Train one epoch from its batch `skip` on (a resumed run's data position: the sampler's order
        depends only on the seed and the epoch, so passing over the consumed batches replays it).

        The micro-batches of an update are read ahead: each term of the loss is divided by its items in all
        of them, on every rank (`ember_train.update_loss`)."""
        args, ctx, optimizer, scheduler = self.args, self.ctx, self.optimizer, self.scheduler
        terms = self.stage.objective.terms
        model.train()
        batches = iter(loader)
        for _ in range(skip):
            next(batches)
        if self.pending_rng:
            self._restore_rng()
        bar = tqdm(desc=f"{self.stage.progress_name} Epoch {epoch}", initial=skip, total=len(loader),
                   dynamic_ncols=True, disable=not ctx.is_main)
        index = skip
        while index < len(loader) and not self._at_max_steps():
            update_end = min(len(loader), (index // args.gradient_accumulation + 1) * args.gradient_accumulation)
            group = [self._on_device(next(batches)) for _ in range(index, update_end)]
            counts = [self.stage.objective.counts(batch) for batch in group]
            totals = update_totals(counts, terms, ctx)
            for batch, batch_counts in zip(group, counts):
                started = time.perf_counter()
                last = index + 1 == update_end
                with accumulation_step(model, last):
                    with autocast(ctx, args.mixed_precision):
                        losses = model(batch)
                    update_loss(losses["sums"], totals, ctx.world_size).backward()
                if last:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                self.step += 1
                index += 1
                bar.update()
                ends_epoch = index == len(loader) or self._at_max_steps()  # then the epoch's evaluation follows
                # The loss of the step's items on every rank (its parts, which a batch may lack, are this rank's).
                loss = mean_loss(all_reduce_sum(term_vector(losses["sums"], batch_counts, terms), ctx), terms)
                seconds = time.perf_counter() - started
                self.history.append({"step": self.step, "loss": loss})
                if self.step % args.log_steps == 0:
                    scalars = {key: value.item() for key, value in losses.items() if key != "sums"} | {"loss": loss}
                    scalars.update(learning_rate=args.learning_rate * schedule(scheduler.last_epoch), step_time=seconds,
                                   samples_per_second=batch["input_ids"].shape[0] * ctx.world_size / seconds)
                    self.tracker.log({f"train/{key}": value for key, value in scalars.items()}, self.step)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{scalars['learning_rate']:.2e}",
                                    samples_s=f"{scalars['samples_per_second']:.1f}")
                if self.step % args.eval_steps == 0 and not ends_epoch:
                    self.stage.evaluate(self, epoch, end_of_epoch=False)
                    model.train()
                if self.step % args.save_steps == 0:
                    self._save(epoch, index, accumulating=not last)
                if self._at_max_steps():
                    break
        bar.close()

    def _on_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A training batch on this rank's device; under SyncBatchNorm, with images even where it had none."""
        if self.sync_batchnorm:
            batch = self.stage.with_images(batch)
        return {key: value.to(self.ctx.device) for key, value in batch.items()}

    def record(self, split: str, metrics: dict[str, float]) -> None:
        """Log an evaluation's metrics to W&B under `{split}/` and as a row of results.csv; a validation
        score better than any before (by the stage's `best_metric`) keeps a copy of the weights."""
        self.tracker.log({f"{split}/{key}": value for key, value in metrics.items()}, self.step)
        if self.ctx.is_main:
            self.results.add(self.step, self.epoch, split, metrics)
        if split != "val":
            return
        score = metrics[self.stage.best_metric] * (1 if self.stage.higher_is_better else -1)
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.best_state = {key: value.detach().cpu().clone() for key, value in self.stage.model.state_dict().items()}

    def restore_best(self) -> None:
        """Put the weights of the best validation score back into the model (if there was a validation)."""
        if self.best_state is not None:
            self.stage.model.load_state_dict(self.best_state)

    def _at_max_steps(self) -> bool:
        return bool(self.args.max_steps) and self.step >= self.args.max_steps

    def _save(self, epoch: int, batch: int, accumulating: bool) -> None:
        """The one place checkpoints are written: by rank 0, atomically, `latest` moved last; then the
        oldest beyond --save_total_limit are deleted. `epoch` and `batch` are the data position to resume at.
        Every rank calls it: each hands rank 0 the state of its random generators."""
        rng_states = gather_objects(rng_state(self.ctx.device), self.ctx)
        if not self.ctx.is_main:
            return
        stage, args = self.stage, self.args
        state = {"stage": stage.number, "epoch": epoch, "batch": batch, "accumulating": accumulating,
                 "wandb_run_id": self.tracker.run_id, "args": asdict(args), "history": self.history,
                 "results_rows": len(self.results.rows), "best_score": self.best_score}
        tensors = {"objective": {name: p.detach().cpu() for name, p in _objective_parameters(stage)},
                   "best_state": self.best_state}
        save_checkpoint(stage.model, stage.processor, stage.stage_dir, self.step, self.optimizer, self.scheduler, state,
                        rng_states, tensors)
        if args.save_total_limit:
            prune_checkpoints(stage.stage_dir, args.save_total_limit)

    def _resume(self, optimizer: torch.optim.Optimizer, scheduler) -> TrainingState:
        """Load the loop's state from `resume_from` (the model's weights came with the stage); the random
        generators are restored later, where the interrupted run had them."""
        training = load_training_state(self.resume_from, self.ctx.rank)
        state = training.state
        if state["stage"] != self.stage.number:
            raise ValueError(f"{self.resume_from} is a Stage {state['stage']} checkpoint; resume Stage "
                             f"{self.stage.number} from one of {self.stage.stage_dir}")
        if state["accumulating"]:
            log.warning("%s was saved between optimizer updates: the gradients accumulated since the last update are "
                        "lost, so the resumed run will differ (make --save_steps a multiple of --gradient_accumulation)",
                        self.resume_from)
        optimizer.load_state_dict(training.optimizer)
        scheduler.load_state_dict(training.scheduler)
        with torch.no_grad():
            for name, parameter in _objective_parameters(self.stage):
                parameter.copy_(training.tensors["objective"][name])
        self.step, self.epoch, self.history = state["step"], state["epoch"], state["history"]
        self.best_score, self.best_state = state["best_score"], training.tensors["best_state"]
        if self.ctx.is_main:
            self.results.keep_first(state["results_rows"])
        self.pending_rng = training
        log.info("Resuming Stage %d from %s: step %d, epoch %d, batch %d", self.stage.number, self.resume_from,
                 self.step, state["epoch"], state["batch"])
        return training

    def _restore_rng(self) -> None:
        """Put this rank's random generators back as they were at the checkpoint being resumed."""
        if self.pending_rng.rng is None:
            log.warning("%s holds no random state of rank %d (it was saved by fewer processes): that rank draws from "
                        "seed + rank, so the resumed run differs from an uninterrupted one", self.resume_from,
                        self.ctx.rank)
        else:
            restore_rng_state(self.pending_rng.rng, self.ctx.device)
        self.pending_rng = None

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
    extra = [parameter for _, parameter in _objective_parameters(stage)]
    if not extra:
        return groups, plans
    count = sum(p.numel() for p in extra)
    return (groups + [{"params": extra, "lr": learning_rate, "weight_decay": 0.0, "name": "loss"}],
            plans + [PartPlan("loss", 1.0, count, count)])


def _objective_parameters(stage: Stage) -> list[tuple[str, torch.nn.Parameter]]:
    """The objective's parameters that are not the model's (Stage 1's contrastive temperature), by name."""
    own = {id(p) for p in stage.model.parameters()}
    return [(name, p) for name, p in stage.objective.named_parameters() if id(p) not in own]
