"""Scoring records with a model and its processor, and turning the scores into the selection metrics."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ember_core.model.vlm import EmberVLM
from ember_core.processor import EmberProcessor, calibrated
from ember_core.request import DEFAULT_CONFIDENCE_THRESHOLD
from ember_train.batches import SelectionDataset, collate, model_inputs
from ember_train.data import TaskRecord, robot_targets
from ember_train.metrics import compute_metrics


@dataclass
class Scores:
    """Raw robot logits and gold targets for a set of records, (n, N) each."""

    logits: np.ndarray
    targets: np.ndarray

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """The calibrated probabilities, as the Selector computes them."""
        return calibrated(torch.from_numpy(self.logits), temperature).numpy()

    def metrics(self, names: Sequence[str], temperature: float = 1.0,
                threshold: float = DEFAULT_CONFIDENCE_THRESHOLD) -> dict[str, float]:
        return compute_metrics(self.probabilities(temperature), self.targets, names, threshold)


@torch.no_grad()
def score_records(model: EmberVLM, processor: EmberProcessor, records: Sequence[TaskRecord], batch_size: int = 32,
                  device: torch.device | str = "cpu", use_images: bool = True,
                  autocast_dtype: torch.dtype | None = None) -> Scores:
    """Robot logits for every record (rendered scenes unless `use_images` is False), in eval mode."""
    was_training = model.training
    model.eval()
    dataset = SelectionDataset(records, processor, with_reasoning=False, use_images=use_images)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=partial(collate, processor=processor))
    logits = []
    device = torch.device(device)
    for batch in loader:
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model(**model_inputs(batch, device))
        logits.append(out["robot_logits"].float().cpu())
    model.train(was_training)
    return Scores(torch.cat(logits).numpy(), robot_targets(records, processor.fleet).astype(np.float32))
