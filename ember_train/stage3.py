"""Stage 3, fleet selection: train the robot head and the reasoning text on robot-selection data."""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ember_core.pretrained import save_pretrained
from ember_core.relevance import PhraseRelevance
from ember_train.args import TrainArgs
from ember_train.augment import augment
from ember_train.baselines import tfidf_logistic
from ember_train.batches import SelectionDataset, TrainingItem, collate, model_inputs
from ember_train.calibration import fit_calibration
from ember_train.data import Splits, TaskRecord, kfold, load_records, robot_targets, split_records
from ember_train.distributed import AUTOCAST_DTYPES, DistributedContext
from ember_train.evaluate import TEST_SCORES_FILE, Scores, score_shards
from ember_train.explanation_phase import train_explanation
from ember_train.losses import STAGE3_TERMS, class_weights, stage3_counts, stage3_loss
from ember_train.metrics import compute_metrics, confusion_matrix, format_metrics
from ember_train.plots import plot_calibration, plot_confusion, plot_final_report, plot_radar, plot_training_curves
from ember_train.stage import Stage
from ember_train.task_memory import remember_tasks
from ember_train.trainer import Trainer

log = logging.getLogger("ember.train")


class SelectionObjective(nn.Module):
    """Stage 3's loss on a batch: robot selection (focal, with class weights) and the explanation's decisions
    (and the scene tags of shown images, for a model with a scene head)."""

    terms = STAGE3_TERMS

    def __init__(self, model: nn.Module, weights: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = self.model(**model_inputs(batch, batch["input_ids"].device))
        return stage3_loss(outputs, batch, self.class_weights, self.model.token_scores)

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return stage3_counts(batch)


class SelectionStage(Stage):
    """The data, evaluation and outputs of Stage 3: validation metrics and plots, the best checkpoint, the
    explanation phase, calibration and the test report."""

    number = 3
    title = "Robot Fleet Selection Training"
    progress_name = "Robot Selection"
    run_name = "stage3_robot_selection"
    best_metric = "macro_f1"
    higher_is_better = True

    def __init__(self, args: TrainArgs, ctx: DistributedContext, init_from: str | None):
        super().__init__(args, ctx, init_from)
        records = load_records(args.robot_data, self.fleet)
        if args.kfold:
            # Cross-validation: fold `fold` is the test set; validation is carved from the rest.
            rest, held_out = kfold(records, args.kfold, args.seed)[args.fold]
            inner = split_records(rest, seed=args.seed, val_fraction=0.1, test_fraction=0.0)
            self.splits = Splits(train=inner.train, val=inner.val, test=held_out)
        else:
            self.splits = split_records(records, seed=args.seed)
        self.train_records = augment(self.splits.train, factor=args.augment_factor, seed=args.seed)
        log.info("Data: %d tasks -> train %d (x%d augmented = %d), val %d, test %d", len(records),
                 len(self.splits.train), args.augment_factor, len(self.train_records), len(self.splits.val),
                 len(self.splits.test))
        self.relevance = PhraseRelevance(self.model, self.processor).for_text  # caches the tasks' embeddings
        remember_tasks(self.model, self.processor, [record.task for record in self.splits.train],
                       robot_targets(self.splits.train, self.fleet))
        self.names = self.fleet.names
        self.plots_dir = self.stage_dir / "visualizations"
        self.train_data = SelectionDataset(self.train_records, self.processor, self.model.config.scene_tags,
                                           relevance=self.relevance, image_dropout=args.image_dropout, seed=args.seed)
        weights = class_weights(torch.from_numpy(robot_targets(self.train_records, self.fleet)).float())
        log.info("Class weights: %s", {n: round(float(w), 3) for n, w in zip(self.names, weights)})
        self.objective = SelectionObjective(self.model, weights)

    def set_epoch(self, epoch: int) -> None:
        self.train_data.set_epoch(epoch)

    def collate(self, items: Sequence[TrainingItem]) -> dict[str, torch.Tensor]:
        return collate(list(items), self.processor)

    def _scores(self, records: list[TaskRecord]) -> Scores:
        return score_shards(self.model, self.processor, records, self.ctx, self.args.batch_size,
                            AUTOCAST_DTYPES[self.args.mixed_precision])

    def evaluate(self, trainer: Trainer, epoch: int, end_of_epoch: bool) -> None:
        """Validation metrics (the trainer keeps the best macro-F1's weights); at the end of an epoch, its plots too.

        Without the task memory's vote: it changes no weight, and with it the remembered tasks' robots would
        win the first epoch already (a model picked before it learned anything). The final test scores count it.
        """
        with self.model.robot_head.vote_paused():
            scores = self._scores(self.splits.val)
        metrics = scores.metrics(self.names)
        if self.ctx.is_main:
            print(format_metrics(metrics, self.names, f"Validation metrics (Epoch {epoch}, Step {trainer.step}):"),
                  flush=True)
        trainer.history.append({"step": trainer.step, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]})
        trainer.record("val", metrics)
        if end_of_epoch and self.ctx.is_main:
            trainer.tracker.log_images(self._epoch_plots(epoch, scores, metrics), trainer.step)

    def _epoch_plots(self, epoch: int, scores: Scores, metrics: dict[str, float]) -> dict[str, Path]:
        probs = scores.probabilities()
        confidence, correct = _top1(probs, scores.targets)
        which = f"epoch {epoch}, val split, {len(probs)} tasks"
        return {
            "val/confusion_matrix": plot_confusion(confusion_matrix(probs, scores.targets), self.names,
                                                   self.plots_dir / f"confusion_matrix_epoch{epoch}.png", f"Confusion ({which})"),
            "val/robot_radar": plot_radar(metrics, self.names, self.plots_dir / f"robot_radar_epoch{epoch}.png",
                                          f"Per-robot performance ({which})"),
            "val/calibration": plot_calibration(confidence, correct, self.plots_dir / f"calibration_epoch{epoch}.png",
                                                f"Calibration ({which})"),
        }

    def finish(self, trainer: Trainer) -> dict[str, Any]:
        """Best weights, a calibration fitted on validation, the test evaluation, the report plots.

        Every rank runs this (the explanation phase is the same on each, scoring is sharded); rank 0 writes.
        """
        args, main, tracker = self.args, self.ctx.is_main, trainer.tracker
        trainer.restore_best()
        if args.explanation_epochs:
            history = train_explanation(self.model, self.processor, self.train_records, self.splits.val,
                                        args.explanation_epochs, args.explanation_learning_rate, args.batch_size,
                                        args.image_dropout, args.seed, self.ctx.device,
                                        self.plots_dir / "explanation_loss.png" if main else None, self.relevance)
            for entry in history:
                # The phase's steps continue the stage's; "loss" is its training loss, "val_loss" its validation loss.
                tracker.log({"val/explanation_loss" if key == "val_loss" else "train/explanation_loss": value
                             for key, value in entry.items() if key != "step"}, trainer.step + int(entry["step"]))
        val = self._scores(self.splits.val)
        calibration = fit_calibration([val.logits], [val.targets])
        before = val.metrics(self.names)["expected_calibration_error"]
        after = val.metrics(self.names, calibration)["expected_calibration_error"]
        log.info("Calibration: %s, validation ECE %.4f -> %.4f", calibration.describe(), before, after)
        self.processor.config.calibration = calibration
        test_records = self.splits.test or self.splits.val
        test = self._scores(test_records)
        best_dir = self.stage_dir / "best"
        summary: dict[str, Any] = {"best_dir": str(best_dir), "calibration": asdict(calibration),
                                   "val_ece_before": before, "val_ece_after": after,
                                   "test": test.metrics(self.names, calibration)}
        if not main:
            return summary
        if args.kfold:  # the baseline on the same training tasks and held-out fold, for `ember train --kfold`
            summary["tfidf_test"] = compute_metrics(tfidf_logistic(self.splits.train, test_records, self.fleet, args.seed),
                                                    test.targets, self.names)
        save_pretrained(self.model, self.processor, best_dir)
        test.save(self.stage_dir / TEST_SCORES_FILE)
        print(format_metrics(summary["test"], self.names, f"Test metrics (best checkpoint, {len(test_records)} tasks):"),
              flush=True)
        trainer.record("test", summary["test"])
        probs = test.probabilities(calibration)
        confidence, correct = _top1(probs, test.targets)
        report = plot_final_report(summary["test"], self.names, confusion_matrix(probs, test.targets), confidence,
                                   correct, self.plots_dir / "final_evaluation_report.png",
                                   f"Stage 3 final evaluation (test split, {len(test_records)} tasks)")
        curves = plot_training_curves(trainer.history, self.plots_dir / "training_curves.png",
                                      f"val split, {len(self.splits.val)} tasks")
        tracker.log_images({"test/final_evaluation_report": report, "val/training_curves": curves}, trainer.step)
        return summary


def _top1(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    best = probs.argmax(1)
    rows = np.arange(len(probs))
    return probs[rows, best], targets[rows, best].astype(bool)
