"""Scoring records with a model and its processor, and turning the scores into the selection metrics."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ember_core.atomic import write_text_atomic
from ember_core.backend import Backend
from ember_core.calibration import Calibration
from ember_core.model.vlm import EmberVLM
from ember_core.part_scorer import load_task_scorer, task_logits
from ember_core.processor import EmberProcessor
from ember_core.request import DEFAULT_CONFIDENCE_THRESHOLD
from ember_train.batches import SelectionDataset, collate, model_inputs
from ember_train.data import TaskRecord, robot_targets
from ember_train.distributed import DistributedContext, gather_shards, shard_indices
from ember_train.metrics import compute_metrics

# A run's held-out scores beside its checkpoints: cross-validation pools them into out-of-fold scores.
TEST_SCORES_FILE = "test_scores.json"


@dataclass
class Scores:
    """Robot logits (`score_records`) and gold targets for a set of records, (n, N) each."""

    logits: np.ndarray
    targets: np.ndarray

    def probabilities(self, calibration: Calibration = Calibration()) -> np.ndarray:
        """The calibrated confidences, as the Selector computes them."""
        return calibration.probabilities(torch.from_numpy(self.logits)).numpy()

    def save(self, path: str | Path) -> None:
        """Write the logits and targets as JSON (atomically)."""
        write_text_atomic(path, json.dumps({"logits": self.logits.tolist(), "targets": self.targets.tolist()}) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Scores:
        """Scores written by `save`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(np.asarray(data["logits"], dtype=np.float32), np.asarray(data["targets"], dtype=np.float32))

    def metrics(self, names: Sequence[str], calibration: Calibration = Calibration(),
                threshold: float = DEFAULT_CONFIDENCE_THRESHOLD) -> dict[str, float]:
        return compute_metrics(self.probabilities(calibration), self.targets, names, threshold)


@torch.no_grad()
def score_records(model: EmberVLM, processor: EmberProcessor, records: Sequence[TaskRecord], batch_size: int = 32,
                  device: torch.device | str = "cpu", use_images: bool = True,
                  autocast_dtype: torch.dtype | None = None) -> Scores:
    """Robot logits for every record (rendered scenes unless `use_images` is False), in eval mode: the head's, with
    the task scorer's added as the Selector adds them (`ember_core.part_scorer.task_logits`)."""
    was_training = model.training
    model.eval()
    dataset = SelectionDataset(records, processor, with_reasoning=False, use_images=use_images)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=partial(collate, processor=processor))
    scorer = load_task_scorer(model.config.text_encoder)
    logits, start = [], 0
    device = torch.device(device)
    for batch in loader:
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = {key: value.float().cpu().numpy() for key, value in model(**model_inputs(batch, device)).items()
                   if key in ("robot_logits", "task_embedding", "familiarity")}
        texts = [record.task for record in records[start:start + len(out["robot_logits"])]]
        logits.append(task_logits(scorer, out["robot_logits"], out.get("task_embedding"), out.get("familiarity"),
                                  texts, processor.fleet.ids))
        start += len(texts)
    model.train(was_training)
    return Scores(np.concatenate(logits), robot_targets(records, processor.fleet).astype(np.float32))


def score_backend(backend: Backend, records: Sequence[TaskRecord], batch_size: int = 32,
                  use_images: bool = True) -> Scores:
    """`score_records` through a Selector backend (torch or onnxruntime): the robot logits of the same features,
    on the backend's numpy batches, so an export is scored exactly as the model it came from."""
    if not records:
        raise ValueError("no records to score")
    dataset = SelectionDataset(records, backend.processor, with_reasoning=False, use_images=use_images)
    scorer = load_task_scorer(backend.config.text_encoder)
    logits = []
    for start in range(0, len(dataset), batch_size):
        features = [dataset[index].features for index in range(start, min(start + batch_size, len(dataset)))]
        out = backend.forward(backend.processor.collate(features, return_tensors="np"))
        texts = [record.task for record in records[start:start + len(features)]]
        logits.append(task_logits(scorer, out.robot_logits, out.task_embedding, out.familiarity, texts,
                                  backend.processor.fleet.ids))
    targets = robot_targets(records, backend.processor.fleet).astype(np.float32)
    return Scores(np.concatenate(logits).astype(np.float32), targets)


def score_shards(model: EmberVLM, processor: EmberProcessor, records: Sequence[TaskRecord], ctx: DistributedContext,
                 batch_size: int = 32, autocast_dtype: torch.dtype | None = None) -> Scores:
    """`score_records` of every record, each rank scoring its shard (`shard_indices`) and every rank getting all
    the logits (`gather_shards`); every rank must call it. In one process it is `score_records`."""
    shard = [records[index] for index in shard_indices(len(records), ctx)]
    if shard:
        logits = torch.from_numpy(score_records(model, processor, shard, batch_size, ctx.device,
                                                autocast_dtype=autocast_dtype).logits)
    else:  # more ranks than records
        logits = torch.zeros(0, len(processor.fleet))
    gathered = gather_shards(logits.to(ctx.device), len(records), ctx).cpu()
    return Scores(gathered.numpy(), robot_targets(records, processor.fleet).astype(np.float32))
