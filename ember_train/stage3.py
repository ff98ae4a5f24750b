"""Stage 3, fleet selection: train the robot head and the reasoning text on robot-selection data."""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ember_core.model.config import preset
from ember_core.relevance import PhraseRelevance
from ember_core.pretrained import build_model, load_pretrained, resolve_device, save_pretrained
from ember_core.robots_file import load_fleet
from ember_train.args import Stage3Args
from ember_train.augment import augment
from ember_train.batches import SelectionDataset, collate, model_inputs
from ember_train.calibration import fit_calibration
from ember_train.checkpointing import save_checkpoint
from ember_train.data import Splits, kfold, load_records, robot_targets, split_records
from ember_train.evaluate import TEST_SCORES_FILE, Scores, score_records
from ember_train.explanation_phase import train_explanation
from ember_train.losses import class_weights, stage3_loss
from ember_train.metrics import confusion_matrix, format_metrics
from ember_train.plots import plot_calibration, plot_confusion, plot_final_report, plot_radar, plot_training_curves
from ember_train.task_memory import remember_tasks
from ember_train.tracking import Tracker

log = logging.getLogger("ember.train")
AUTOCAST_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Stage3Trainer:
    """Owns the data, model, optimizer and outputs of one Stage 3 run (single process)."""

    def __init__(self, args: Stage3Args):
        self.args = args
        _seed_everything(args.seed)
        self.device = resolve_device(args.device)
        if args.mixed_precision not in AUTOCAST_DTYPES:
            raise ValueError(f"--mixed_precision must be one of {', '.join(AUTOCAST_DTYPES)}, got {args.mixed_precision!r}")
        self.autocast_dtype = AUTOCAST_DTYPES[args.mixed_precision]
        self.fleet = load_fleet(args.robots)
        records = load_records(args.robot_data, self.fleet)
        if args.kfold:
            # Cross-validation: fold `fold` is the test set; validation is carved from the rest.
            rest, held_out = kfold(records, args.kfold, args.seed)[args.fold]
            inner = split_records(rest, seed=args.seed, val_fraction=0.1, test_fraction=0.0)
            self.splits = Splits(train=inner.train, val=inner.val, test=held_out)
        else:
            self.splits = split_records(records, seed=args.seed)
        self.train_records = augment(self.splits.train, factor=args.augment_factor, seed=args.seed)
        log.info("=" * 60)
        log.info("Stage 3: Robot Fleet Selection Training")
        log.info("=" * 60)
        log.info("Data: %d tasks -> train %d (x%d augmented = %d), val %d, test %d", len(records),
                 len(self.splits.train), args.augment_factor, len(self.train_records), len(self.splits.val), len(self.splits.test))
        if args.init_from:
            log.info("Loading model from checkpoint: %s", args.init_from)
            self.model, self.processor = load_pretrained(args.init_from, fleet=self.fleet)
        else:
            self.model, self.processor = build_model(preset(args.model_config), self.fleet)
        self.model.to(self.device)
        self.relevance = PhraseRelevance(self.model, self.processor).for_text  # caches the tasks' embeddings
        remember_tasks(self.model, self.processor, [record.task for record in self.splits.train])
        self.names = self.fleet.names
        self.stage_dir = Path(args.output_dir) / "stage3"
        self.plots_dir = self.stage_dir / "visualizations"
        self.history: list[dict[str, float]] = []
        self.best_f1 = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.step = 0

    def train(self) -> dict[str, Any]:
        args = self.args
        dataset = SelectionDataset(self.train_records, self.processor, self.model.config.scene_tags,
                                   relevance=self.relevance,
                                   image_dropout=args.image_dropout, seed=args.seed)
        generator = torch.Generator().manual_seed(args.seed)
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, generator=generator,
                            collate_fn=partial(collate, processor=self.processor))
        weights = class_weights(torch.from_numpy(robot_targets(self.train_records, self.fleet)).float()).to(self.device)
        log.info("Class weights: %s", {n: round(float(w), 3) for n, w in zip(self.names, weights)})
        optimizer = torch.optim.AdamW(self._parameter_groups(), weight_decay=args.weight_decay)
        updates = math.ceil(len(loader) / args.gradient_accumulation) * args.stage3_robot_epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(_warmup_cosine, total=updates,
                                                                         warmup=int(updates * args.warmup_ratio)))
        tracker = Tracker(args.wandb, Path(args.output_dir), "stage3_robot_selection", asdict(args))
        state = {"epoch": 0, "wandb_run_id": tracker.run_id, "args": asdict(args)}
        try:
            for epoch in range(args.stage3_robot_epochs):
                state["epoch"] = epoch
                dataset.set_epoch(epoch)
                self._train_epoch(epoch, loader, weights, optimizer, scheduler, tracker, state)
                self._evaluate(epoch, tracker, plots=True)
                if args.max_steps and self.step >= args.max_steps:
                    break
            save_checkpoint(self.model, self.processor, self.stage_dir, self.step, optimizer, scheduler, state)
            return self._finish(tracker)
        finally:
            tracker.finish()

    def _parameter_groups(self) -> list[dict[str, Any]]:
        """Per-part learning rates (nanoVLM style): the small heads start from scratch and need more than
        the pretrained-or-large parts; a multiplier of 0 freezes them."""
        heads = [self.model.robot_head] + ([self.model.scene_head] if self.model.scene_head is not None else [])
        head = [p for module in heads for p in module.parameters() if p.requires_grad]
        head_ids = {id(p) for p in head}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in head_ids]
        rate = self.args.learning_rate
        return [{"params": rest, "lr": rate}, {"params": head, "lr": rate * self.args.head_lr_multiplier}]

    def _train_epoch(self, epoch: int, loader: DataLoader, weights: torch.Tensor, optimizer, scheduler,
                     tracker: Tracker, state: dict) -> None:
        args = self.args
        self.model.train()
        bar = tqdm(loader, desc=f"Robot Selection Epoch {epoch}", dynamic_ncols=True)
        for index, batch in enumerate(bar):
            started = time.perf_counter()
            batch = {key: value.to(self.device) for key, value in batch.items()}
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                outputs = self.model(**model_inputs(batch, self.device))
            losses = stage3_loss(outputs, batch, weights, self.model.token_scores)
            (losses["loss"] / args.gradient_accumulation).backward()
            if (index + 1) % args.gradient_accumulation == 0 or index + 1 == len(loader):
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            self.step += 1
            seconds = time.perf_counter() - started
            scalars = {key: value.item() for key, value in losses.items()}  # loss and its parts
            scalars.update(learning_rate=scheduler.get_last_lr()[0], step_time=seconds,
                           samples_per_second=batch["input_ids"].shape[0] / seconds)
            self.history.append({"step": self.step, "loss": scalars["loss"]})
            tracker.log({f"stage3/{key}": value for key, value in scalars.items()}, self.step)
            bar.set_postfix(loss=f"{scalars['loss']:.4f}", lr=f"{scalars['learning_rate']:.2e}",
                            samples_s=f"{scalars['samples_per_second']:.1f}")
            if self.step % args.eval_steps == 0:
                self._evaluate(epoch, tracker, plots=False)
                self.model.train()
            if self.step % args.save_steps == 0:
                save_checkpoint(self.model, self.processor, self.stage_dir, self.step, optimizer, scheduler, state)
            if args.max_steps and self.step >= args.max_steps:
                break

    def _scores(self, records) -> Scores:
        return score_records(self.model, self.processor, records, self.args.batch_size, self.device,
                             autocast_dtype=self.autocast_dtype)

    def _evaluate(self, epoch: int, tracker: Tracker, plots: bool) -> dict[str, float]:
        scores = self._scores(self.splits.val)
        metrics = scores.metrics(self.names)
        print(format_metrics(metrics, self.names, f"Validation metrics (Epoch {epoch}, Step {self.step}):"), flush=True)
        self.history.append({"step": self.step, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]})
        tracker.log({f"stage3/{key}": value for key, value in metrics.items()}, self.step)
        if metrics["macro_f1"] > self.best_f1:
            self.best_f1 = metrics["macro_f1"]
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if plots:
            tracker.log_images(self._epoch_plots(epoch, scores, metrics), self.step)
        return metrics

    def _epoch_plots(self, epoch: int, scores: Scores, metrics: dict[str, float]) -> dict[str, Path]:
        probs = scores.probabilities()
        confidence, correct = _top1(probs, scores.targets)
        return {
            "stage3/confusion_matrix": plot_confusion(confusion_matrix(probs, scores.targets), self.names,
                                                      self.plots_dir / f"confusion_matrix_epoch{epoch}.png", f"Confusion (epoch {epoch})"),
            "stage3/robot_radar": plot_radar(metrics, self.names, self.plots_dir / f"robot_radar_epoch{epoch}.png",
                                             f"Per-robot performance (epoch {epoch})"),
            "stage3/calibration": plot_calibration(confidence, correct, self.plots_dir / f"calibration_epoch{epoch}.png",
                                                   f"Calibration (epoch {epoch})"),
        }

    def _finish(self, tracker: Tracker) -> dict[str, Any]:
        """Best weights, a calibration fitted on validation, the test evaluation, the report plots."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        if self.args.explanation_epochs:
            args = self.args
            history = train_explanation(self.model, self.processor, self.train_records, self.splits.val,
                                        args.explanation_epochs, args.explanation_learning_rate, args.batch_size,
                                        args.image_dropout, args.seed, self.device, self.plots_dir / "explanation_loss.png",
                                        self.relevance)
            for entry in history:
                tracker.log({f"stage3/explanation_{key}": value for key, value in entry.items() if key != "step"},
                            self.step + int(entry["step"]))
        val = self._scores(self.splits.val)
        calibration = fit_calibration([val.logits], [val.targets])
        before = val.metrics(self.names)["expected_calibration_error"]
        after = val.metrics(self.names, calibration)["expected_calibration_error"]
        log.info("Calibration: %s, validation ECE %.4f -> %.4f", calibration.describe(), before, after)
        self.processor.config.calibration = calibration
        best_dir = save_pretrained(self.model, self.processor, self.stage_dir / "best")
        summary: dict[str, Any] = {"best_dir": str(best_dir), "calibration": asdict(calibration), "val_ece_before": before,
                                   "val_ece_after": after, "val": val.metrics(self.names, calibration)}
        test_records = self.splits.test or self.splits.val
        test = self._scores(test_records)
        summary["test"] = test.metrics(self.names, calibration)
        test.save(self.stage_dir / TEST_SCORES_FILE)
        print(format_metrics(summary["test"], self.names, f"Test metrics (best checkpoint, {len(test_records)} tasks):"), flush=True)
        tracker.log({f"stage3/test_{key}": value for key, value in summary["test"].items()}, self.step)
        probs = test.probabilities(calibration)
        confidence, correct = _top1(probs, test.targets)
        report = plot_final_report(summary["test"], self.names, confusion_matrix(probs, test.targets), confidence, correct,
                                   self.plots_dir / "final_evaluation_report.png", "Stage 3 final evaluation (test split)")
        curves = plot_training_curves(self.history, self.plots_dir / "training_curves.png")
        tracker.log_images({"stage3/final_evaluation_report": report, "stage3/training_curves": curves}, self.step)
        return summary


def _top1(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    best = probs.argmax(1)
    rows = np.arange(len(probs))
    return probs[rows, best], targets[rows, best].astype(bool)


def _warmup_cosine(update: int, total: int, warmup: int) -> float:
    if update < warmup:
        return (update + 1) / (warmup + 1)
    progress = (update - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
